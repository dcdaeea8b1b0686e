//! Mail delivery. The default writes each message to an outbox directory in the data
//! dir (one file per message id, so a redelivered saga event overwrites, not doubles);
//! with `MEDLEDGER_SMTP_URL` set, mail goes to that SMTP server.

use std::path::PathBuf;

use async_trait::async_trait;
use medledger_application::ports::{Mail, MailError, Mailer};
use tokio::io::AsyncWriteExt as _;

pub struct OutboxMailer {
    dir: PathBuf,
    from: String,
}

impl OutboxMailer {
    pub fn new(dir: PathBuf, from: impl Into<String>) -> Self {
        Self { dir, from: from.into() }
    }
}

fn file_name(message_id: &str) -> String {
    let safe: String = message_id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
    format!("{safe}.eml")
}

#[async_trait]
impl Mailer for OutboxMailer {
    async fn send(&self, mail: &Mail) -> Result<(), MailError> {
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || crate::private_files::create_dir_all(&dir))
            .await
            .map_err(|e| MailError::Outbox(e.into()))?
            .map_err(MailError::Outbox)?;
        let text = format!(
            "Message-ID: <{}@medledger>\r\nFrom: {}\r\nTo: {}\r\nSubject: {}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{}",
            mail.message_id, self.from, mail.to, mail.subject, mail.body
        );
        let path = self.dir.join(file_name(&mail.message_id));
        // Write then rename: a reader never sees half a message. The reset link in it is
        // a credential: the file is the server user's alone.
        let tmp = path.with_extension("tmp");
        let mut file = crate::private_files::tokio_file_options()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .await
            .map_err(MailError::Outbox)?;
        file.write_all(text.as_bytes()).await.map_err(MailError::Outbox)?;
        file.flush().await.map_err(MailError::Outbox)?;
        drop(file);
        tokio::fs::rename(&tmp, &path).await.map_err(MailError::Outbox)
    }
}

/// Sends through an SMTP server given as `smtp://[user:password@]host[:port]`.
///
/// Plain SMTP only: no TLS library is built in, so point it at a relay on the same host
/// or network (Postfix, an MTA sidecar) that handles TLS onwards.
pub struct SmtpMailer {
    transport: lettre::AsyncSmtpTransport<lettre::Tokio1Executor>,
    from: lettre::message::Mailbox,
}

/// Why `MEDLEDGER_SMTP_URL` or the sender cannot be used. Never shows the URL: it may
/// hold a password.
#[derive(Debug, thiserror::Error)]
pub enum SmtpSettingError {
    #[error("MEDLEDGER_SMTP_URL must start with smtp://")]
    NotSmtp,
    #[error("bad SMTP port in MEDLEDGER_SMTP_URL")]
    BadPort(#[source] std::num::ParseIntError),
    #[error("MEDLEDGER_SMTP_URL has no host")]
    NoHost,
    #[error("bad sender address '{from}'")]
    BadSender { from: String, source: lettre::address::AddressError },
}

impl SmtpMailer {
    pub fn from_url(url: &str, from: &str) -> Result<Self, SmtpSettingError> {
        let rest = url.strip_prefix("smtp://").ok_or(SmtpSettingError::NotSmtp)?;
        let (credentials, host_port) = match rest.rsplit_once('@') {
            Some((creds, hp)) => (Some(creds), hp),
            None => (None, rest),
        };
        let host_port = host_port.trim_end_matches('/');
        let (host, port) = match host_port.rsplit_once(':') {
            Some((h, p)) => (h, p.parse::<u16>().map_err(SmtpSettingError::BadPort)?),
            None => (host_port, 25),
        };
        if host.is_empty() {
            return Err(SmtpSettingError::NoHost);
        }
        let mut builder = lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::builder_dangerous(host).port(port);
        if let Some(creds) = credentials {
            let (user, password) = creds.split_once(':').unwrap_or((creds, ""));
            builder =
                builder.credentials(lettre::transport::smtp::authentication::Credentials::new(user.to_string(), password.to_string()));
        }
        let from = from.parse().map_err(|source| SmtpSettingError::BadSender { from: from.to_string(), source })?;
        Ok(Self { transport: builder.build(), from })
    }
}

#[async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, mail: &Mail) -> Result<(), MailError> {
        use lettre::AsyncTransport as _;
        let to = mail.to.parse().map_err(|e: lettre::address::AddressError| MailError::Message(e.into()))?;
        let message = lettre::Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject.clone())
            .message_id(Some(format!("<{}@medledger>", mail.message_id)))
            .header(lettre::message::header::ContentType::TEXT_PLAIN)
            .body(mail.body.clone())
            .map_err(|e| MailError::Message(e.into()))?;
        self.transport.send(message).await.map(|_| ()).map_err(|e| MailError::Transport(e.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn same_message_id_is_one_file() {
        let dir = std::env::temp_dir().join(format!("medledger-outbox-{}", uuid::Uuid::new_v4()));
        let m = OutboxMailer::new(dir.clone(), "noreply@medledger.local");
        let mail = Mail { message_id: "abc/../x".into(), to: "a@b.org".into(), subject: "s".into(), body: "b".into() };
        m.send(&mail).await.unwrap();
        m.send(&mail).await.unwrap();
        let files: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(files.len(), 1);
        let _ = std::fs::remove_dir_all(dir);
    }
}
