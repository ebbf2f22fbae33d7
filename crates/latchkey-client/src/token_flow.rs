//! Login by token flow (Modal/Memori): create a flow, send the person to the browser, long-poll
//! until they approve, verify the key with `/v1/me`, store it.

use latchkey_proto::{
    WaitSecret,
    wire::{TokenFlowCreateRequest, TokenFlowCreateResponse},
};
use url::Url;

use crate::{
    Client, ClientError,
    api::backoff,
    login::{LOGIN_DEADLINE, LoginEvent, LoginOptions, LoginOutcome},
    loopback::LoopbackServer,
    storage::Secret,
};

impl Client {
    pub(crate) async fn create_token_flow(
        &self,
        options: &LoginOptions,
        localhost_port: Option<u16>,
    ) -> Result<(TokenFlowCreateResponse, String), ClientError> {
        let settings = &self.settings;
        let flow = self
            .api
            .create_flow(&TokenFlowCreateRequest {
                localhost_port,
                next_url: settings.next_url.clone(),
                utm_source: options.utm_source.clone(),
                client_name: Some(format!(
                    "{} CLI on {}",
                    settings.app.name,
                    crate::oauth_login::device_name()
                )),
            })
            .await?;
        let url = match &settings.login_url {
            Some(login_url) => login_url_for(login_url, &flow.token_flow_id, &flow.code),
            None => flow.web_url.clone(),
        };
        Ok((flow, url))
    }

    /// Long-polls until the flow is approved (the key), denied, expired or `deadline` passes.
    pub(crate) async fn wait_token_flow(
        &self,
        flow_id: &str,
        wait_secret: &WaitSecret,
        deadline: tokio::time::Instant,
        on_event: &mut (dyn FnMut(LoginEvent<'_>) + Send),
    ) -> Result<String, ClientError> {
        let mut failures = 0;
        loop {
            match self
                .api
                .wait_flow(flow_id, wait_secret, self.settings.wait_timeout)
                .await
            {
                Ok(r) if !r.timeout => {
                    return r.api_key.or(r.token_secret).ok_or_else(|| {
                        ClientError::Internal(
                            "the server approved the login but sent no key".into(),
                        )
                    });
                }
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
        }
    }

    /// `open_browser` is called with the URL and says whether a browser opened.
    pub async fn login_token_flow(
        &self,
        options: LoginOptions,
        open_browser: &dyn Fn(&str) -> bool,
        on_event: &mut (dyn FnMut(LoginEvent<'_>) + Send),
    ) -> Result<LoginOutcome, ClientError> {
        let settings = &self.settings;
        let loopback = LoopbackServer::start(settings.login_port, settings.issuer_id()).await?;
        let (flow, url) = self
            .create_token_flow(&options, Some(loopback.port()))
            .await?;
        loopback.set_flow_id(&flow.token_flow_id);
        let browser_opened = options.open_browser && open_browser(&url);
        on_event(LoginEvent::Started {
            url: &url,
            code: Some(&flow.code),
            browser_opened,
        });
        let deadline = tokio::time::Instant::now() + LOGIN_DEADLINE;
        let api_key = self
            .wait_token_flow(&flow.token_flow_id, &flow.wait_secret, deadline, on_event)
            .await?;
        drop(loopback);
        on_event(LoginEvent::Approved);
        self.finish_login(Secret::ApiKey { api_key }, deadline)
            .await
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
