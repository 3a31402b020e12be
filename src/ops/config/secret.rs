//! Secrets: the app password and the admin token, read from a file named in
//! the configuration or from systemd's `$CREDENTIALS_DIRECTORY`, never from
//! the configuration itself, and held as a [`Secret`] that is never shown.
//!
//! Separate from the section types because secrets are read at start-up from
//! files of their own, after the configuration has loaded.
//!
//! An empty credential is "not configured", an empty file named in the
//! configuration an error: the packaged unit (`systemd/pricewatch.service`)
//! gives each credential an empty default with `SetCredential=`, because a
//! missing `LoadCredential=` source would otherwise fail the start, and a
//! service without an app password is local-development mode.

use std::io;
use std::path::{Path, PathBuf};

use crate::secret::Secret;
use crate::shown::Shown;

/// Name of the app password under `$CREDENTIALS_DIRECTORY`.
pub const APP_PASSWORD_CREDENTIAL: &str = "app-password";
/// The credential name of the admin token under `$CREDENTIALS_DIRECTORY`.
pub const ADMIN_TOKEN_CREDENTIAL: &str = "admin-token";
/// Shorter admin tokens are refused at start-up: guessable.
pub const MIN_ADMIN_TOKEN: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read secret file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("secret file {} is empty", path.display())]
    Empty { path: PathBuf },
}

/// Reads a secret from `explicit` if given (it must exist and not be empty),
/// else from `<credentials_dir>/<name>` if that exists and is not empty
/// (systemd `LoadCredential=`), else returns `Ok(None)`. Trailing newlines are
/// dropped. Production passes `std::env::var_os("CREDENTIALS_DIRECTORY")` as
/// `credentials_dir`.
pub fn read_secret(
    explicit: Option<&Path>,
    credentials_dir: Option<&Path>,
    name: &str,
) -> Result<Option<Secret>, SecretError> {
    read(explicit, credentials_dir, name, |text| {
        text.trim_end_matches(['\r', '\n'])
    })
}

/// Like [`read_secret`], for a token compared with one a client presents: whitespace
/// around it is dropped, as it is around the presented one, so a file an editor saved
/// with a trailing space still matches. Only whitespace is "empty".
pub fn read_token(
    explicit: Option<&Path>,
    credentials_dir: Option<&Path>,
    name: &str,
) -> Result<Option<Secret>, SecretError> {
    read(explicit, credentials_dir, name, str::trim)
}

fn read(
    explicit: Option<&Path>,
    credentials_dir: Option<&Path>,
    name: &str,
    strip: fn(&str) -> &str,
) -> Result<Option<Secret>, SecretError> {
    let (path, optional) = match (explicit, credentials_dir) {
        (Some(path), _) => (path.to_owned(), false),
        (None, Some(dir)) if !dir.as_os_str().is_empty() => (dir.join(name), true),
        (None, _) => return Ok(None),
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(err) if optional && err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(SecretError::Read { path, source }),
    };
    let value = strip(&text);
    if value.is_empty() {
        if optional {
            tracing::info!(
                credential = name,
                path = %Shown::text(path.display()),
                "credential is empty: not configured (the unit's default when its file in /etc/pricewatch is missing)"
            );
            return Ok(None);
        }
        return Err(SecretError::Empty { path });
    }
    Ok(Some(Secret::new(value)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::config::BotConfig;

    #[test]
    fn secret_from_explicit_file_trims_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "s3cret \n").unwrap();
        let secret = read_secret(Some(&path), Some(dir.path()), "app-password").unwrap();
        assert_eq!(secret.unwrap().expose(), "s3cret ");
    }

    #[test]
    fn secret_from_credentials_directory() {
        let dir = tempfile::tempdir().unwrap();
        let bot = BotConfig::default();
        assert!(bot.app_password(Some(dir.path())).unwrap().is_none());
        assert!(bot.app_password(None).unwrap().is_none());
        std::fs::write(dir.path().join("app-password"), "from-systemd\r\n").unwrap();
        let secret = bot.app_password(Some(dir.path())).unwrap();
        assert_eq!(secret.unwrap().expose(), "from-systemd");
    }

    #[test]
    fn a_token_file_loses_the_whitespace_around_the_token() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin-token");
        std::fs::write(&path, "  0123456789abcdef \t\r\n\n").unwrap();
        let token = read_token(Some(&path), None, ADMIN_TOKEN_CREDENTIAL).unwrap();
        assert_eq!(token.unwrap().expose(), "0123456789abcdef");
        // Blank is empty: refused when named, not configured as a credential.
        std::fs::write(&path, " \n\t\n").unwrap();
        let err = read_token(Some(&path), None, ADMIN_TOKEN_CREDENTIAL).unwrap_err();
        assert!(matches!(err, SecretError::Empty { .. }));
        let credential = dir.path().join(ADMIN_TOKEN_CREDENTIAL);
        std::fs::write(&credential, " \n").unwrap();
        assert!(read_token(None, Some(dir.path()), ADMIN_TOKEN_CREDENTIAL)
            .unwrap()
            .is_none());
    }

    #[test]
    fn secret_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let err = read_secret(Some(&missing), Some(dir.path()), "x").unwrap_err();
        assert!(matches!(err, SecretError::Read { .. }));
        assert!(
            err.to_string().contains(&*missing.to_string_lossy()),
            "{err}"
        );
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let err = read_secret(Some(&empty), None, "x").unwrap_err();
        assert!(matches!(err, SecretError::Empty { .. }));
    }

    /// systemd writes the unit's `SetCredential=` default (a lone newline) when
    /// /etc/pricewatch has no such file: that is no secret, not an error.
    #[test]
    fn empty_credential_is_not_configured() {
        let dir = tempfile::tempdir().unwrap();
        for (name, content) in [("app-password", "\n"), ("admin-token", "")] {
            std::fs::write(dir.path().join(name), content).unwrap();
            let secret = read_secret(None, Some(dir.path()), name).unwrap();
            assert!(secret.is_none(), "{name} {content:?}");
        }
        let bot = BotConfig::default();
        assert!(bot.app_password(Some(dir.path())).unwrap().is_none());
        let notify = crate::ops::config::NotifyConfig::default();
        assert!(notify.admin_token(Some(dir.path())).unwrap().is_none());
    }

    /// The empty-credential rule is for `$CREDENTIALS_DIRECTORY` only: a file the
    /// configuration names explicitly and that is empty is still refused, even
    /// when a credential of the same name exists.
    #[test]
    fn empty_explicit_file_is_still_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("app-password"), "from-systemd").unwrap();
        let empty = dir.path().join("named-in-config");
        std::fs::write(&empty, "").unwrap();
        let err = read_secret(Some(&empty), Some(dir.path()), "app-password").unwrap_err();
        assert!(matches!(err, SecretError::Empty { .. }), "{err}");
    }
}
