//! `pricewatch demo`: the whole loop on one machine, with nothing to configure and no
//! internet: the demo shop on loopback, a daemon in this process on a temporary data
//! directory (configured to read that shop, checking each product every minute), and the
//! chat in this terminal, whose `/price`, `/stock` and `/products` lines go to the shop.
//! Leaving the chat stops the daemon and the shop and removes the directory.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::shop::{self, DemoShop};
use crate::app::App;
use crate::chat::{self, ChatOptions, Local, LocalCommands, Outcome, Source};

/// Why the demo could not start.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot create the demo's temporary directory")]
    TempDir(#[source] std::io::Error),
    #[error("cannot start the demo shop")]
    Shop(#[source] shop::ShopError),
    #[error("the demo's configuration is not valid (a bug in pricewatch):\n{0}")]
    Config(String),
    #[error("cannot start the daemon")]
    Daemon(#[source] crate::app::AppError),
    #[error("cannot listen for signals")]
    Signals(#[source] std::io::Error),
}

/// What `pricewatch demo` was asked to do.
pub struct DemoOptions {
    /// Lines to play instead of the terminal.
    pub source: Source,
    pub wait_for: Option<regex::Regex>,
    pub timeout: Duration,
    pub json: bool,
    pub ansi: bool,
    pub user: String,
}

/// The configuration the demo's daemon runs on: loopback only, the shop's port allowed to
/// be fetched, each product checked every minute (the shortest interval the schedule
/// allows) with a tick every 5 seconds and no jitter, so an alert follows a price drop
/// within about a minute; logs only errors, so the chat keeps the terminal.
pub fn daemon_config(data: &std::path::Path, shop: SocketAddr) -> String {
    format!(
        r#"[server]
bind = "127.0.0.1:0"
shutdown_grace = "2s"

[storage]
path = {data}

[schedule]
tick = "*/5 * * * * *"
interval = "1m"
jitter = 0

[fetch]
allow_networks = ["127.0.0.0/8"]
ports = [{port}]
host_gap = "0s"

# The shop's search, so that `watch headphones` offers its products.
[[catalog]]
name = "Demo shop"
search_url = "http://127.0.0.1:{port}/search.json?q={{query}}"
results = "/products"
title = "/name"
link = "/url"
price = "/price"
currency_pointer = "/currency"

[log]
# warp reports a client that leaves mid-request at error level; the chat's terminal is no
# place for it.
level = "error,warp=off"
"#,
        // A TOML basic string: the path's backslashes and quotes escaped.
        data = toml::Value::String(data.display().to_string()),
        port = shop.port(),
    )
}

/// The shop's commands inside the chat, and `/watch N` for `watch <product N's link>`.
struct ShopCommands(Arc<DemoShop>);

impl LocalCommands for ShopCommands {
    fn handle(&self, line: &str) -> Option<Local> {
        if let Some(rest) = line.strip_prefix("/watch") {
            let n = rest.trim();
            return Some(match n.parse::<usize>() {
                Ok(n) => match self.0.product_url(n) {
                    Some(url) => Local::Send(format!("watch {url}")),
                    None => Local::Answer(format!(
                        "/watch takes a product number from 1 to {}, e.g. /watch 1",
                        self.0.products().len()
                    )),
                },
                Err(_) => Local::Answer(format!(
                    "/watch takes a product number from 1 to {}, e.g. /watch 1",
                    self.0.products().len()
                )),
            });
        }
        match shop::parse_command(line)? {
            Ok(command) => Some(Local::Answer(match self.0.apply(&command) {
                Ok(answer) => answer,
                Err(e) => format!("shop: {e}"),
            })),
            Err(message) => Some(Local::Answer(message)),
        }
    }

    fn help(&self) -> String {
        "The demo shop (not sent to the bot):\n  \
         /products            the products, their prices and links\n  \
         /watch N             watch product N (sends `watch <its link>`)\n  \
         /price N -25%        lower (or raise: +10%) product N's price, or set it: /price N 19.99\n  \
         /stock N out|in      take product N out of stock or back"
            .to_owned()
    }
}

/// What the demo prints before the chat starts.
fn intro(shop: &DemoShop) -> String {
    let mut text = String::from(
        "pricewatch demo: a shop, the daemon and this chat, all on this machine.\n\n\
         The demo shop's products:\n",
    );
    for p in shop.products() {
        text.push_str(&format!(
            "  {}. {} — {}{}\n     {}\n",
            p.number,
            p.name,
            p.price,
            if p.in_stock { "" } else { " (out of stock)" },
            p.url
        ));
    }
    let first = shop
        .product_url(1)
        .map(|u| u.to_string())
        .unwrap_or_default();
    text.push_str(&format!(
        "\nTry:\n  1. watch {first}\n     (the bot answers, then tells you the first price it read)\n  \
         2. once the first price is shown: /price 1 -25%\n     (the shop lowers the price; \
         within about a minute the bot's alert arrives here)\n  \
         3. or find a product by name: watch headphones\n     (the bot searches the shop and \
         offers its matches; choose one by its button number)\n\n/help lists the chat's and the shop's commands; Ctrl-C or /quit \
         stops everything."
    ));
    text
}

/// Runs the demo until the chat ends; everything it started is stopped and its directory
/// removed before this returns.
pub async fn run(options: DemoOptions) -> Result<Outcome, DemoError> {
    let dir = tempfile::Builder::new()
        .prefix("pricewatch-demo-")
        .tempdir()
        .map_err(DemoError::TempDir)?;
    let shop = Arc::new(
        DemoShop::start(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .map_err(DemoError::Shop)?,
    );
    let text = daemon_config(&dir.path().join("data"), shop.addr());
    let config = crate::ops::config::load_str("<demo>", &text, std::iter::empty())
        .map_err(|e| DemoError::Config(e.to_string()))?;
    crate::ops::telemetry::init(&config.log);
    let app = App::start(&config).await.map_err(DemoError::Daemon)?;
    let bot_url = format!("http://{}/api/messages", app.local_addr());
    let stop = app.shutdown_token();
    let daemon = tokio::spawn(app.run_until_stopped());
    let chat_options = ChatOptions {
        bot_url,
        channel_id: "emulator".to_owned(),
        user: options.user,
        locale: None,
        conversation: None,
        wait_for: options.wait_for,
        timeout: options.timeout,
        json: options.json,
        token: None,
        state_path: dir.path().join("chat.json"),
        port: None,
        ansi: options.ansi,
    };
    let source = match options.source {
        Source::Terminal { .. } => Source::Terminal {
            history: Some(PathBuf::from(dir.path()).join("chat_history")),
        },
        lines => lines,
    };
    let local: Arc<dyn LocalCommands> = Arc::new(ShopCommands(shop.clone()));
    let outcome = chat::run(chat_options, source, Some(local), Some(intro(&shop))).await;
    stop.cancel();
    match daemon.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => eprintln!("pricewatch demo: the daemon stopped with an error: {e}"),
        Err(e) => eprintln!("pricewatch demo: the daemon's task failed: {e}"),
    }
    if let Ok(shop) = Arc::try_unwrap(shop) {
        shop.shutdown().await;
    }
    // Removing the directory is what `dir`'s drop does; said here so a failure is seen.
    if let Err(e) = dir.close() {
        eprintln!("pricewatch demo: could not remove its temporary directory: {e}");
    }
    Ok(outcome)
}

/// `pricewatch demo --shop-only`: the shop alone, until Ctrl-C or SIGTERM, for a daemon
/// and a chat started separately (its `POST /control` takes the shop commands).
pub async fn shop_only(port: u16) -> Result<(), DemoError> {
    let shop = DemoShop::start(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .map_err(DemoError::Shop)?;
    println!("demo shop at http://{}/", shop.addr());
    for p in shop.products() {
        println!("{} {} {}", p.number, p.url, p.price);
    }
    println!(
        "change prices with: curl -d '/price 1 -25%' http://{}/control",
        shop.addr()
    );
    let stop = tokio_util::sync::CancellationToken::new();
    crate::ops::shutdown::listen(stop.clone()).map_err(DemoError::Signals)?;
    stop.cancelled().await;
    shop.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_daemon_config_loads_and_reads_the_shop_every_minute() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("a \"quoted\" dir\\x");
        let text = daemon_config(&data, "127.0.0.1:4567".parse().unwrap());
        let config = crate::ops::config::load_str("<demo>", &text, std::iter::empty())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.storage.path, data);
        assert_eq!(config.schedule.interval, Duration::from_secs(60));
        assert_eq!(config.schedule.jitter, 0);
        assert!(config.bot.is_local_development());
        let catalogs = config.catalogs().unwrap();
        let url = catalogs
            .iter()
            .next()
            .unwrap()
            .search_url("trail shoes")
            .unwrap();
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:4567/search.json?q=trail%20shoes"
        );
        crate::app::preflight(&config).unwrap();
    }
}
