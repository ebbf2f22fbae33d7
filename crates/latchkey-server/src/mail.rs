//! Mail delivery: SMTP (lettre) in production; in dev, the log and an outbox file tests read.

use std::path::PathBuf;

use async_trait::async_trait;
use latchkey_core::{Mail, MailError, Mailer};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor, message::Mailbox};
use tokio::{io::AsyncWriteExt, sync::Mutex};

pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

#[derive(Debug, thiserror::Error)]
pub enum SmtpConfigError {
    #[error("smtp_url is not a valid SMTP URL")]
    Url(#[source] lettre::transport::smtp::Error),
    #[error("mail_from {0:?} is not a valid address")]
    From(String),
}

impl SmtpMailer {
    pub fn new(url: &str, from: &str) -> Result<Self, SmtpConfigError> {
        Ok(Self {
            transport: AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
                .map_err(SmtpConfigError::Url)?
                .build(),
            from: from
                .parse()
                .map_err(|_| SmtpConfigError::From(from.to_owned()))?,
        })
    }
}

fn mail_error(to: &str, e: impl std::error::Error + Send + Sync + 'static) -> MailError {
    MailError {
        to: to.to_owned(),
        source: Box::new(e),
    }
}

#[async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, mail: Mail) -> Result<(), MailError> {
        let to: Mailbox = mail.to.parse().map_err(|e| mail_error(&mail.to, e))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject)
            .body(mail.text)
            .map_err(|e| mail_error(&mail.to, e))?;
        self.transport
            .send(message)
            .await
            .map_err(|e| mail_error(&mail.to, e))?;
        Ok(())
    }
}

/// Every mail signed with the brand: the product's name, its support link and footer.
pub struct Signed<M> {
    inner: M,
    signature: String,
}

impl<M> Signed<M> {
    pub fn new(inner: M, signature: String) -> Self {
        Self { inner, signature }
    }
}

#[async_trait]
impl<M: Mailer> Mailer for Signed<M> {
    async fn send(&self, mut mail: Mail) -> Result<(), MailError> {
        mail.text.push_str(&self.signature);
        self.inner.send(mail).await
    }
}

/// Dev mode: each message is logged and appended as one JSON line to the outbox file.
pub struct DevOutbox {
    path: PathBuf,
    write: Mutex<()>,
}

impl DevOutbox {
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            write: Mutex::new(()),
        }
    }
}

#[async_trait]
impl Mailer for DevOutbox {
    async fn send(&self, mail: Mail) -> Result<(), MailError> {
        // The dev mail transport, on one line under its own target: the only log lines that
        // carry links (with their secrets), and only in --dev.
        tracing::info!(target: "latchkey::dev_mail", to = %mail.to, subject = %mail.subject, text = ?mail.text, "dev mode: email not sent");
        let mut line = serde_json::json!({
            "to": mail.to,
            "subject": mail.subject,
            "text": mail.text,
        })
        .to_string();
        line.push('\n');
        let _guard = self.write.lock().await;
        let mut options = tokio::fs::OpenOptions::new();
        options.create(true).append(true);
        // Links in these mails sign people in: only the server's user may read them.
        #[cfg(unix)]
        options.mode(0o600);
        let mut file = options
            .open(&self.path)
            .await
            .map_err(|e| mail_error(&mail.to, e))?;
        file.write_all(line.as_bytes())
            .await
            .map_err(|e| mail_error(&mail.to, e))?;
        // tokio finishes a file write on a blocking thread: wait for it, so the mail is on
        // disk before the request that sent it is answered.
        file.flush().await.map_err(|e| mail_error(&mail.to, e))
    }
}
