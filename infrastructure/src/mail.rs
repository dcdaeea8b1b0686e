//! Mail delivery. The default writes each message to an outbox directory in the data
//! dir (one file per message id, so a redelivered saga event overwrites, not doubles).

use std::path::PathBuf;

use async_trait::async_trait;
use medledger_application::ports::{Mail, Mailer};

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
    async fn send(&self, mail: &Mail) -> Result<(), String> {
        tokio::fs::create_dir_all(&self.dir).await.map_err(|e| e.to_string())?;
        let text = format!(
            "Message-ID: <{}@medledger>\r\nFrom: {}\r\nTo: {}\r\nSubject: {}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{}",
            mail.message_id, self.from, mail.to, mail.subject, mail.body
        );
        let path = self.dir.join(file_name(&mail.message_id));
        // Write then rename: a reader never sees half a message.
        let tmp = path.with_extension("tmp");
        tokio::fs::write(&tmp, text).await.map_err(|e| e.to_string())?;
        tokio::fs::rename(&tmp, &path).await.map_err(|e| e.to_string())
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
