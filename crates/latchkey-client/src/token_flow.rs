//! Login by token flow (Modal/Memori): create a flow, send the person to the browser, long-poll
//! until they approve, verify the key with `/v1/me`, store it.

use std::time::Duration;

use latchkey_proto::wire::{MeResponse, TokenFlowCreateRequest};
use url::Url;

use crate::{
    Client, ClientError,
    api::{backoff, retrying},
    loopback::LoopbackServer,
    storage::Stored,
};

/// A login gives up after this long: the server's flows expire after 10 minutes.
const LOGIN_DEADLINE: Duration = Duration::from_secs(11 * 60);

#[derive(Debug, Clone, Default)]
pub struct LoginOptions {
    /// Try to open a browser (false: only report the URL).
    pub open_browser: bool,
    pub utm_source: Option<String>,
}

/// What the login reports as it goes, for the caller to show.
#[derive(Debug)]
pub enum LoginEvent<'a> {
    /// The person should open `url` and check that it shows `code`.
    Started {
        url: &'a str,
        code: &'a str,
        browser_opened: bool,
    },
    /// The server could not be reached; the login keeps trying.
    Retrying { error: &'a ClientError },
    /// The key arrived and is being checked and stored.
    Approved,
}

#[derive(Debug)]
pub struct LoginOutcome {
    pub me: MeResponse,
    pub stored: Stored,
}

impl Client {
    /// `open_browser` is called with the URL and says whether a browser opened.
    pub async fn login_token_flow(
        &self,
        options: LoginOptions,
        open_browser: &dyn Fn(&str) -> bool,
        on_event: &mut (dyn FnMut(LoginEvent<'_>) + Send),
    ) -> Result<LoginOutcome, ClientError> {
        let settings = &self.settings;
        let loopback = LoopbackServer::start(settings.login_port, settings.issuer_id()).await?;
        let flow = self
            .api
            .create_flow(&TokenFlowCreateRequest {
                localhost_port: Some(loopback.port()),
                next_url: settings.next_url.clone(),
                utm_source: options.utm_source.clone(),
                client_name: Some(format!(
                    "{} CLI on {}",
                    settings.app.name,
                    std::env::consts::OS
                )),
            })
            .await?;
        loopback.set_flow_id(&flow.token_flow_id);

        let url = match &settings.login_url {
            Some(login_url) => login_url_for(login_url, &flow.token_flow_id, &flow.code),
            None => flow.web_url.clone(),
        };
        let browser_opened = options.open_browser && open_browser(&url);
        on_event(LoginEvent::Started {
            url: &url,
            code: &flow.code,
            browser_opened,
        });

        let deadline = tokio::time::Instant::now() + LOGIN_DEADLINE;
        let mut failures = 0;
        let api_key = loop {
            match self
                .api
                .wait_flow(
                    &flow.token_flow_id,
                    &flow.wait_secret,
                    settings.wait_timeout,
                )
                .await
            {
                Ok(r) if !r.timeout => match r.api_key.or(r.token_secret) {
                    Some(key) => break key,
                    None => {
                        return Err(ClientError::Internal(
                            "the server approved the login but sent no key".into(),
                        ));
                    }
                },
                Ok(_) => failures = 0,
                Err(e) if e.is_transient() && tokio::time::Instant::now() < deadline => {
                    on_event(LoginEvent::Retrying { error: &e });
                    tokio::time::sleep(backoff(failures)).await;
                    failures += 1;
                }
                Err(e) => return Err(e),
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ClientError::FlowExpired);
            }
        };
        drop(loopback);
        on_event(LoginEvent::Approved);

        let me = retrying(deadline, || self.api.me(&api_key)).await?;
        let stored = self.storage.save(
            &settings.issuer_id(),
            &me.user_id,
            &me.email,
            &me.org.slug,
            &api_key,
        )?;
        Ok(LoginOutcome { me, stored })
    }
}

/// Memori's `--login-url`: the given page with `token_flow_id`, `code` and `source=cli` added.
fn login_url_for(base: &Url, flow_id: &str, code: &str) -> String {
    let mut url = base.clone();
    url.query_pairs_mut()
        .append_pair("token_flow_id", flow_id)
        .append_pair("code", code)
        .append_pair("source", "cli");
    url.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_urls_keep_their_own_query_and_add_the_flow() {
        let base = Url::parse("https://acme.dev/login?lang=en").expect("url");
        assert_eq!(
            login_url_for(&base, "tf_1", "BCDF-GHJK"),
            "https://acme.dev/login?lang=en&token_flow_id=tf_1&code=BCDF-GHJK&source=cli"
        );
    }
}
