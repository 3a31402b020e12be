//! Everything the bot says, in English and French. Pure functions: data in, text out.
//!
//! A user never sees a Rust error: every failure the bot can explain has a sentence here
//! that says what was wrong and what to type instead.

use crate::domain::product_url::UrlError;
use crate::domain::{Rule, Watch};
use crate::inbound::command::{CommandError, Verb};
use crate::speech::format::plain_number;

/// The reply language, from the activity's `locale`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    Fr,
}

impl Lang {
    /// English unless the locale asks for French (`fr`, `fr-FR`, `fr_CA`, …).
    pub fn from_locale(locale: Option<&str>) -> Lang {
        match locale {
            Some(l) if l.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("fr")) => Lang::Fr,
            _ => Lang::En,
        }
    }
}

pub fn help(lang: Lang) -> String {
    match lang {
        Lang::En => "Here is what I can do:\n\n\
            - `watch <link>`: watch a product and tell you when its price drops 20% below today's\n\
            - `watch <link> 15%`: the same with your own drop\n\
            - `watch <link> below 149.99`: tell you when it costs 149.99 or less\n\
            - `watch <link> restock`: tell you when an out-of-stock product is back in stock\n\
            - `watch <product name>`: search the shops set up here and choose among the matches\n\
            - `list`: your watches, numbered\n\
            - `unwatch 2`, `unwatch <link>` or `unwatch all`: stop watching\n\
            - `history 2`: lowest, highest and latest price of watch 2\n\
            - `watch 2 15%` or `watch 2 below 99`: give watch 2 a new rule, keeping its history\n\
            - `pause 2`, `resume 2` (or `all`): stop and restart checks and alerts without forgetting the watch\n\
            - `help`: this message\n\n\
            The French commands (`surveiller`, `liste`, `arrêter`, `historique`, `aide`) work too.\n\n\
            Example: `watch https://shop.example/p/123 15%`"
            .to_owned(),
        Lang::Fr => "Voici ce que je sais faire :\n\n\
            - `surveiller <lien>` (ou `suivre <lien>`) : surveiller un produit et vous prévenir quand son prix baisse de 20 % par rapport à aujourd'hui\n\
            - `surveiller <lien> 15%` : la même chose avec votre propre baisse\n\
            - `surveiller <lien> sous 149,99` (ou `seuil 149,99`) : vous prévenir quand il coûte 149,99 ou moins\n\
            - `surveiller <lien> réassort` (ou `retour en stock`) : vous prévenir quand un produit en rupture de stock est de nouveau disponible\n\
            - `surveiller <nom du produit>` : chercher dans les boutiques configurées ici et choisir parmi les résultats\n\
            - `liste` (ou `mes suivis`) : vos surveillances, numérotées\n\
            - `arrêter 2`, `arrêter <lien>` ou `arrêter tout` (ou `ne plus suivre 2`) : arrêter de surveiller\n\
            - `historique 2` : prix le plus bas, le plus haut et le dernier de la surveillance 2\n\
            - `surveiller 2 15%` ou `surveiller 2 sous 99` : donner une nouvelle règle à la surveillance 2, en gardant son historique\n\
            - `pause 2`, `reprendre 2` (ou `pause all`, `reprendre all`) : suspendre puis reprendre vérifications et alertes sans oublier la surveillance\n\
            - `aide` : ce message\n\n\
            Les commandes anglaises (`watch`, `list`, `unwatch`, `history`, `help`) marchent aussi.\n\n\
            Exemple : `surveiller https://shop.example/p/123 15%`"
            .to_owned(),
    }
}

pub fn welcome(lang: Lang, bot_name: &str) -> String {
    match lang {
        Lang::En => format!(
            "Hello! I am {bot_name}. Give me a product link and I will tell you here when its price drops.\n\n{}",
            help(lang)
        ),
        Lang::Fr => format!(
            "Bonjour ! Je suis {bot_name}. Donnez-moi le lien d'un produit et je vous préviendrai ici quand son prix baissera.\n\n{}",
            help(lang)
        ),
    }
}

/// A rule as the replies and proactive messages write it.
pub(crate) fn rule_text(lang: Lang, rule: &Rule) -> String {
    match (lang, rule) {
        (Lang::En, Rule::Drop { percent }) => {
            format!("a drop of {}% or more", plain_number(lang, *percent))
        }
        (Lang::Fr, Rule::Drop { percent }) => {
            format!("une baisse de {} % ou plus", plain_number(lang, *percent))
        }
        (Lang::En, Rule::Below { amount: a }) => {
            format!("a price of {} or less", plain_number(lang, *a))
        }
        (Lang::Fr, Rule::Below { amount: a }) => {
            format!("un prix de {} ou moins", plain_number(lang, *a))
        }
        (Lang::En, Rule::Restock) => "a return to stock".to_owned(),
        (Lang::Fr, Rule::Restock) => "un retour en stock".to_owned(),
    }
}

/// Whether this daemon checks prices (`schedule.enabled`), for what a new watch is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checks {
    Running,
    Paused,
}

pub fn watch_added(lang: Lang, number: usize, watch: &Watch, checks: Checks) -> String {
    if watch.rule == Rule::Restock {
        return restock_added(lang, number, watch, checks);
    }
    let rule = rule_text(lang, &watch.rule);
    let next = match (lang, checks) {
        (Lang::En, Checks::Running) => "Its first price will follow as soon as I have read it.",
        (Lang::En, Checks::Paused) => {
            "Price checks are paused on this pricewatch for now; I will read its price when they resume."
        }
        (Lang::Fr, Checks::Running) => "Son premier prix suivra dès que je l'aurai lu.",
        (Lang::Fr, Checks::Paused) => {
            "Les vérifications de prix sont en pause sur ce pricewatch ; je lirai son prix à leur reprise."
        }
    };
    match lang {
        Lang::En => format!(
            "Watch #{number} stored: {url}\nI will tell you here on {rule}. {next}",
            url = watch.url
        ),
        Lang::Fr => format!(
            "Surveillance n°{number} enregistrée : {url}\nJe vous préviendrai ici pour {rule}. {next}",
            url = watch.url
        ),
    }
}

fn restock_added(lang: Lang, number: usize, watch: &Watch, checks: Checks) -> String {
    let url = &watch.url;
    let next = match (lang, checks) {
        (Lang::En, Checks::Running) => {
            "Whether it is in stock now will follow as soon as I have read its page."
        }
        (Lang::En, Checks::Paused) => {
            "Checks are paused on this pricewatch for now; I will read its page when they resume."
        }
        (Lang::Fr, Checks::Running) => {
            "Sa disponibilité actuelle suivra dès que j'aurai lu sa page."
        }
        (Lang::Fr, Checks::Paused) => {
            "Les vérifications sont en pause sur ce pricewatch ; je lirai sa page à leur reprise."
        }
    };
    match lang {
        Lang::En => format!(
            "Watch #{number} stored: {url}\nI will tell you here when it is back in stock, once each time it returns. {next}"
        ),
        Lang::Fr => format!(
            "Surveillance n°{number} enregistrée : {url}\nJe vous préviendrai ici quand il sera de nouveau en stock, une fois à chaque retour. {next}"
        ),
    }
}

pub fn duplicate(lang: Lang, number: usize, watch: &Watch) -> String {
    match lang {
        Lang::En => format!(
            "You already watch this product as #{number}: {}. Type `list` to see your watches.",
            watch.url
        ),
        Lang::Fr => format!(
            "Vous surveillez déjà ce produit (n°{number}) : {}. Tapez `liste` pour voir vos surveillances.",
            watch.url
        ),
    }
}

pub fn limit_reached(lang: Lang, max: usize) -> String {
    match lang {
        Lang::En => format!(
            "This conversation already has {max} watches, the most I keep. Remove one with `unwatch <number>` first."
        ),
        Lang::Fr => format!(
            "Cette conversation a déjà {max} surveillances, le maximum. Supprimez-en une avec `arrêter <numéro>` d'abord."
        ),
    }
}

pub fn no_watches(lang: Lang) -> String {
    match lang {
        Lang::En => {
            "You are not watching anything yet. Try `watch https://shop.example/p/123`.".to_owned()
        }
        Lang::Fr => {
            "Vous ne surveillez rien pour l'instant. Essayez `surveiller https://shop.example/p/123`."
                .to_owned()
        }
    }
}

pub fn removed(lang: Lang, removed: &[(usize, Watch)]) -> String {
    match removed {
        [] => no_watches(lang),
        [(n, w)] => match lang {
            Lang::En => format!("Stopped watching #{n}: {}", w.url),
            Lang::Fr => format!("Surveillance n°{n} arrêtée : {}", w.url),
        },
        many => {
            let mut out = match lang {
                Lang::En => format!("Stopped watching {} products:", many.len()),
                Lang::Fr => format!("{} surveillances arrêtées :", many.len()),
            };
            for (n, w) in many {
                out.push_str(&format!("\n- #{n}: {}", w.url));
            }
            out
        }
    }
}

pub fn not_watching_url(lang: Lang, url: &str) -> String {
    match lang {
        Lang::En => format!("You are not watching {url}. Type `list` to see your watches."),
        Lang::Fr => {
            format!("Vous ne surveillez pas {url}. Tapez `liste` pour voir vos surveillances.")
        }
    }
}

pub fn no_such_number(lang: Lang, n: usize, count: usize) -> String {
    match (lang, count) {
        (_, 0) => no_watches(lang),
        (Lang::En, _) => format!(
            "There is no watch #{n}: you have {count}. Type `list` to see their numbers."
        ),
        (Lang::Fr, _) => format!(
            "Il n'y a pas de surveillance n°{n} : vous en avez {count}. Tapez `liste` pour voir leurs numéros."
        ),
    }
}

/// `watch 2 15%` done: the old rule and the new one.
pub fn rule_changed(lang: Lang, number: usize, before: &Rule, after: &Rule) -> String {
    let (old, new) = (rule_text(lang, before), rule_text(lang, after));
    if before == after {
        return match lang {
            Lang::En => format!("Watch #{number} already alerts on {new}; nothing changed."),
            Lang::Fr => {
                format!("La surveillance n°{number} alerte déjà pour {new} ; rien n'a changé.")
            }
        };
    }
    match lang {
        Lang::En => format!(
            "Watch #{number} changed: it alerted on {old}, it now alerts on {new}. Its first price and history stay; the new rule applies from the next check."
        ),
        Lang::Fr => format!(
            "Surveillance n°{number} modifiée : elle alertait pour {old}, elle alerte désormais pour {new}. Son premier prix et son historique restent ; la nouvelle règle s'applique dès la prochaine vérification."
        ),
    }
}

/// `watch 2 restock` on a price watch, or a price rule on a restock watch: the two kinds keep
/// different state, so the watch is not converted.
pub fn rule_kind_differs(lang: Lang, number: usize, watch: &Watch) -> String {
    let url = &watch.url;
    match (lang, watch.rule == Rule::Restock) {
        (Lang::En, false) => format!(
            "Watch #{number} follows a price, so it cannot become a restock watch. To be told when it is back in stock, type `watch {url} restock` after `unwatch {number}`."
        ),
        (Lang::En, true) => format!(
            "Watch #{number} waits for a return to stock, so it cannot take a price rule. To follow its price, type `watch {url} 15%` (or `below <price>`) after `unwatch {number}`."
        ),
        (Lang::Fr, false) => format!(
            "La surveillance n°{number} suit un prix, elle ne peut pas devenir une alerte de retour en stock. Pour cela, tapez `arrêter {number}` puis `surveiller {url} réassort`."
        ),
        (Lang::Fr, true) => format!(
            "La surveillance n°{number} attend un retour en stock, elle ne peut pas prendre une règle de prix. Pour suivre son prix, tapez `arrêter {number}` puis `surveiller {url} 15%` (ou `sous <prix>`)."
        ),
    }
}

/// `pause` or `resume` done, for the watches found (with their `list` numbers).
pub fn held(lang: Lang, on_hold: bool, watches: &[(usize, Watch)]) -> String {
    let numbers: Vec<String> = watches.iter().map(|(n, _)| format!("#{n}")).collect();
    let numbers = numbers.join(", ");
    match (lang, on_hold, watches.len()) {
        (_, _, 0) => no_watches(lang),
        (Lang::En, true, 1) => format!(
            "Watch {numbers} paused: I will not check it or send anything about it until you type `resume {}`.",
            watches[0].0
        ),
        (Lang::En, true, _) => format!(
            "Watches {numbers} paused: I will not check them or send anything about them until you type `resume all`."
        ),
        (Lang::En, false, 1) => format!(
            "Watch {numbers} resumed: it keeps its first price and history, and the next check compares the price with its rule again."
        ),
        (Lang::En, false, _) => format!(
            "Watches {numbers} resumed: they keep their first price and history, and the next check compares the price with their rule again."
        ),
        (Lang::Fr, true, 1) => format!(
            "Surveillance {numbers} en pause : je ne la vérifie plus et n'en envoie plus rien jusqu'à ce que vous tapiez `resume {}`.",
            watches[0].0
        ),
        (Lang::Fr, true, _) => format!(
            "Surveillances {numbers} en pause : je ne les vérifie plus et n'en envoie plus rien jusqu'à ce que vous tapiez `resume all`."
        ),
        (Lang::Fr, false, 1) => format!(
            "Surveillance {numbers} reprise : elle garde son premier prix et son historique, et la prochaine vérification compare de nouveau le prix à sa règle."
        ),
        (Lang::Fr, false, _) => format!(
            "Surveillances {numbers} reprises : elles gardent leur premier prix et leur historique, et la prochaine vérification compare de nouveau le prix à leur règle."
        ),
    }
}

/// A turn's reply as it is sent: what the bot wrote, with the user's text in it made
/// harmless ([`crate::speech::format::visible`]).
pub fn said(text: &str) -> String {
    crate::speech::format::visible(text)
}

pub fn unknown(lang: Lang, text: &str, suggestion: Option<&str>) -> String {
    let shown: String = text.chars().take(60).collect();
    match (lang, suggestion) {
        (Lang::En, Some(s)) => {
            format!("I did not understand “{shown}”. Did you mean `{s}`? Type `help` for the commands.")
        }
        (Lang::En, None) => {
            format!("I did not understand “{shown}”. Type `help` for the commands.")
        }
        (Lang::Fr, Some(s)) => format!(
            "Je n'ai pas compris « {shown} ». Vouliez-vous dire `{s}` ? Tapez `aide` pour la liste des commandes."
        ),
        (Lang::Fr, None) => {
            format!("Je n'ai pas compris « {shown} ». Tapez `aide` pour la liste des commandes.")
        }
    }
}

pub fn storage_failed(lang: Lang) -> String {
    match lang {
        Lang::En => "Sorry, I could not save that just now, so nothing changed. Please try again in a minute.".to_owned(),
        Lang::Fr => "Désolé, je n'ai pas pu l'enregistrer, rien n'a changé. Réessayez dans une minute.".to_owned(),
    }
}

/// Explains a command the parser refused, with what to type instead.
pub fn command_error(lang: Lang, error: &CommandError) -> String {
    use CommandError as E;
    let fr = lang == Lang::Fr;
    match error {
        E::Url(UrlError::Missing) => {
            if fr {
                "Il manque le lien du produit. Exemple : `surveiller https://shop.example/p/123`"
                    .to_owned()
            } else {
                "Which product? Add its link, for example `watch https://shop.example/p/123`."
                    .to_owned()
            }
        }
        E::Url(UrlError::NotHttp { scheme }) => {
            if fr {
                format!("Je ne surveille que des liens http ou https, pas « {scheme}: ». Copiez le lien depuis la barre d'adresse du navigateur.")
            } else {
                format!("I only watch http or https links, not “{scheme}:”. Copy the link from your browser's address bar.")
            }
        }
        E::Url(UrlError::TooLong { len, max }) => {
            if fr {
                format!("Ce lien fait {len} caractères, le maximum est {max}. Essayez le lien court de la page produit.")
            } else {
                format!("That link is {len} characters long; the most I accept is {max}. Try the product page's short link.")
            }
        }
        E::Url(UrlError::Credentials) => {
            if fr {
                "Ce lien contient un identifiant ou un mot de passe : je ne le surveille pas. Envoyez le lien sans `utilisateur:motdepasse@`.".to_owned()
            } else {
                "That link contains a user name or password, so I will not watch it. Send the link without the `user:password@` part.".to_owned()
            }
        }
        E::Url(UrlError::Invalid { reason }) => {
            if fr {
                format!("Ce lien n'est pas valide ({reason}). Exemple : `surveiller https://shop.example/p/123`")
            } else {
                format!("That link is not valid ({reason}). Example: `watch https://shop.example/p/123`")
            }
        }
        E::QueryTooLong { len, max } => {
            if fr {
                format!("Un nom de produit de {len} caractères, c'est trop : je cherche {max} caractères au plus. Raccourcissez-le, ou envoyez le lien du produit.")
            } else {
                format!("That product name is {len} characters long; I search at most {max}. Shorten it, or send the product's link.")
            }
        }
        E::InvalidDrop { text } => {
            if fr {
                format!("« {text} » n'est pas un pourcentage. Exemple : `surveiller <lien> 15%`")
            } else {
                format!("“{text}” is not a percentage. Example: `watch <link> 15%`")
            }
        }
        E::DropOutOfRange { percent, min, max } => {
            if fr {
                format!(
                    "Une baisse de {} % n'est pas possible : choisissez entre {} et {} %.",
                    plain_number(lang, *percent),
                    plain_number(lang, *min),
                    plain_number(lang, *max)
                )
            } else {
                format!(
                    "A drop of {}% is not possible: choose between {}% and {}%.",
                    plain_number(lang, *percent),
                    plain_number(lang, *min),
                    plain_number(lang, *max)
                )
            }
        }
        E::InvalidTarget { text } => {
            if fr {
                format!(
                    "« {text} » n'est pas un prix positif. Exemple : `surveiller <lien> sous 149,99`"
                )
            } else {
                format!("“{text}” is not a positive price. Example: `watch <link> below 149.99`")
            }
        }
        E::UnexpectedWords {
            command: Verb::Watch,
            words,
        } => {
            if fr {
                format!("Je ne sais pas quoi faire de « {words} ». Après le lien, ajoutez une baisse (`15%`), un prix (`sous 149,99`) ou `réassort`, ou rien.")
            } else {
                format!("I do not know what to do with “{words}”. After the link, add a drop (`15%`), a price (`below 149.99`) or `restock`, or nothing.")
            }
        }
        E::UnexpectedWords {
            command: Verb::Unwatch,
            words,
        } => {
            if fr {
                format!("Je ne sais pas quoi faire de « {words} ». `arrêter` arrête une surveillance à la fois : `arrêter 2` (le numéro vient de `liste`), `arrêter <lien>` ou `arrêter tout`.")
            } else {
                format!("I do not know what to do with “{words}”. `unwatch` stops one watch at a time: `unwatch 2` (numbers come from `list`), `unwatch <link>` or `unwatch all`.")
            }
        }
        E::UnexpectedWords {
            command: Verb::History,
            words,
        } => {
            if fr {
                format!("Je ne sais pas quoi faire de « {words} ». `historique` montre une surveillance à la fois : `historique 2` (le numéro vient de `liste`).")
            } else {
                format!("I do not know what to do with “{words}”. `history` shows one watch at a time: `history 2` (numbers come from `list`).")
            }
        }
        E::MissingUnwatchTarget => {
            if fr {
                "Laquelle ? Tapez `arrêter 2` (le numéro vient de `liste`), `arrêter <lien>` ou `arrêter tout`.".to_owned()
            } else {
                "Which one? Type `unwatch 2` (numbers come from `list`), `unwatch <link>` or `unwatch all`.".to_owned()
            }
        }
        E::UnexpectedWords {
            command: command @ (Verb::Pause | Verb::Resume),
            words,
        } => {
            if fr {
                format!("Je ne sais pas quoi faire de « {words} ». Tapez `{command} 2` (le numéro vient de `list`) ou `{command} all`.")
            } else {
                format!("I do not know what to do with “{words}”. Type `{command} 2` (numbers come from `list`) or `{command} all`.")
            }
        }
        E::MissingHoldTarget { command } => {
            if fr {
                format!("Laquelle ? Tapez `{command} 2` (le numéro vient de `list`) ou `{command} all`.")
            } else {
                format!(
                    "Which one? Type `{command} 2` (numbers come from `list`) or `{command} all`."
                )
            }
        }
        E::MissingRule { index } => {
            if fr {
                format!("Quelle nouvelle règle pour la surveillance n°{index} ? Par exemple `watch {index} 15%` ou `watch {index} below 99`.")
            } else {
                format!("What new rule for watch #{index}? For example `watch {index} 15%` or `watch {index} below 99`.")
            }
        }
        E::InvalidIndex { text } => {
            if fr {
                format!("« {text} » n'est pas un numéro de surveillance. Tapez `liste` pour voir les numéros.")
            } else {
                format!("“{text}” is not a watch number. Type `list` to see the numbers.")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locale_picks_the_language() {
        assert_eq!(Lang::from_locale(Some("fr-FR")), Lang::Fr);
        assert_eq!(Lang::from_locale(Some("FR")), Lang::Fr);
        assert_eq!(Lang::from_locale(Some("en-US")), Lang::En);
        assert_eq!(Lang::from_locale(Some("f")), Lang::En);
        assert_eq!(Lang::from_locale(Some("é")), Lang::En);
        assert_eq!(Lang::from_locale(Some("aé")), Lang::En);
        assert_eq!(Lang::from_locale(None), Lang::En);
    }

    #[test]
    fn a_restock_watch_is_confirmed_as_such() {
        use crate::domain::ProductUrl;
        use crate::inbound::activity::ConversationKey;
        let watch = Watch {
            id: 1,
            conversation: ConversationKey {
                channel_id: "emulator".into(),
                conversation_id: "c".into(),
            },
            user: None,
            url: ProductUrl::parse("https://shop.example/p/1", 2048).unwrap(),
            rule: Rule::Restock,
            created_at_ms: 0,
            trigger: Default::default(),
            paused: false,
            on_hold: false,
        };
        let en = watch_added(Lang::En, 2, &watch, Checks::Running);
        assert!(
            en.starts_with("Watch #2 stored: https://shop.example/p/1\n"),
            "{en}"
        );
        assert!(
            en.contains("when it is back in stock, once each time it returns"),
            "{en}"
        );
        let fr = watch_added(Lang::Fr, 2, &watch, Checks::Paused);
        assert!(fr.contains("quand il sera de nouveau en stock"), "{fr}");
        assert!(fr.contains("en pause"), "{fr}");
        assert_eq!(rule_text(Lang::En, &Rule::Restock), "a return to stock");
        assert_eq!(rule_text(Lang::Fr, &Rule::Restock), "un retour en stock");
        assert!(help(Lang::En).contains("`watch <link> restock`"));
        assert!(help(Lang::Fr).contains("`surveiller <lien> réassort`"));
    }

    #[test]
    fn amounts_follow_the_language() {
        use rust_decimal::Decimal;
        let d = Decimal::new(14999, 2);
        assert_eq!(plain_number(Lang::En, d), "149.99");
        assert_eq!(plain_number(Lang::Fr, d), "149,99");
        assert_eq!(plain_number(Lang::En, Decimal::new(2000, 2)), "20");
        // A typed `below 1.299` is 1299, and the reply shows it grouped.
        assert_eq!(plain_number(Lang::En, Decimal::from(1299)), "1,299");
        assert_eq!(
            plain_number(Lang::Fr, Decimal::new(12995, 1)),
            "1\u{202f}299,5"
        );
    }

    proptest::proptest! {
        /// The pure part of a turn, from the text a user sent to the reply that refuses
        /// it: whatever the text, the reply is said, in both languages, carries none of the
        /// controls `visible` removes, and is never much longer than what was sent.
        #[test]
        fn any_text_gets_a_clean_reply(
            text in proptest::prelude::any::<String>(),
            noise in proptest::sample::select(vec![
                "", "\u{202E}", "\u{2066}", "\u{200E}", "\u{061C}", "\u{0}", "\u{1b}[2J",
            ]),
            command in proptest::sample::select(vec![
                "", "watch ", "unwatch ", "history ", "watch https://shop.example/p ",
                "watch https://shop.example/p below ",
            ]),
        ) {
            use crate::inbound::command::{clean_text, parse, Command, Limits};
            let text = format!("{command}{noise}{text}{noise}");
            for lang in [Lang::En, Lang::Fr] {
                let refusal = match parse(&text, &Limits::default(), None) {
                    Err(e) => Some(command_error(lang, &e)),
                    Ok(Command::Unknown { suggestion }) => {
                        Some(unknown(lang, &clean_text(&text), suggestion))
                    }
                    Ok(_) => None,
                };
                let Some(refusal) = refusal else { continue };
                let reply = said(&refusal);
                proptest::prop_assert!(!reply.trim().is_empty());
                proptest::prop_assert_eq!(&crate::speech::format::visible(&reply), &reply);
                proptest::prop_assert!(
                    reply.chars().count() <= text.chars().count() + 400,
                    "{:?} → {:?}", text, reply
                );
            }
        }
    }

    #[test]
    fn help_names_every_command_in_both_languages() {
        let english = ["watch", "list", "unwatch", "history", "help"];
        let french = ["surveiller", "liste", "arrêter", "historique", "aide"];
        for (lang, words) in [(Lang::En, english), (Lang::Fr, french)] {
            let h = help(lang);
            for c in words {
                assert!(h.contains(&format!("- `{c}")), "{lang:?} help lacks {c}");
            }
        }
        // The French help shows every French form the parser takes, each of which parses.
        let fr = help(Lang::Fr);
        for form in [
            "`suivre <lien>`",
            "`seuil 149,99`",
            "`retour en stock`",
            "`mes suivis`",
            "`arrêter tout`",
            "`ne plus suivre 2`",
        ] {
            assert!(fr.contains(form), "French help lacks {form}");
        }
        use crate::inbound::command::{parse, Command, Limits};
        let french_part: Vec<&str> = fr
            .lines()
            .filter(|l| !l.starts_with("Les commandes anglaises"))
            .collect();
        for example in french_part.join("\n").split('`').skip(1).step_by(2) {
            let example = example
                .replace("<lien>", "https://shop.example/p/1")
                .replace("<nom du produit>", "poêle en fonte")
                .replace("seuil", "surveiller https://shop.example/p/1 seuil")
                .replace(
                    "retour en stock",
                    "surveiller https://shop.example/p/1 retour en stock",
                );
            let parsed = parse(&example, &Limits::default(), Some("fr-FR"));
            assert!(
                matches!(parsed, Ok(ref c) if !matches!(c, Command::Unknown { .. })),
                "French help example {example:?} parses as {parsed:?}"
            );
        }
    }

    #[test]
    fn french_replies_name_french_commands() {
        let fr = unknown(Lang::Fr, "surveler", Some("surveiller"));
        assert!(fr.contains("`surveiller`") && fr.contains("`aide`"), "{fr}");
        let en = unknown(Lang::En, "wacth", Some("watch"));
        assert!(en.contains("`watch`") && en.contains("`help`"), "{en}");
        let missing = command_error(Lang::Fr, &CommandError::MissingUnwatchTarget);
        assert!(missing.contains("`arrêter tout`"), "{missing}");
    }
}
