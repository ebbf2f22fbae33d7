//! A person at a browser, played over HTTP: a cookie jar, forms with their CSRF tokens.

use anyhow::{Context, Result, bail};
use reqwest::{StatusCode, redirect::Policy};

use crate::Server;

#[derive(Debug, Clone)]
pub struct Person {
    pub http: reqwest::Client,
    pub base: String,
}

/// A fetched page: its final URL, status and HTML.
#[derive(Debug, Clone)]
pub struct Page {
    pub url: String,
    pub status: StatusCode,
    pub html: String,
}

impl Page {
    /// The value of the first hidden input named `name`, unescaped as a browser would.
    pub fn input(&self, name: &str) -> Option<String> {
        let marker = format!("name=\"{name}\" value=\"");
        let start = self.html.find(&marker)? + marker.len();
        let end = self.html[start..].find('"')? + start;
        Some(html_escape::decode_html_entities(&self.html[start..end]).into_owned())
    }

    pub fn csrf(&self) -> Result<String> {
        self.input("csrf").context("the page has no CSRF token")
    }

    pub fn contains(&self, text: &str) -> bool {
        self.html.contains(text)
    }
}

impl Person {
    pub fn new(server: &Server) -> Result<Self> {
        Self::browsing_with(server, None)
    }

    /// A person whose browser sends `user_agent` (reqwest sends none of its own).
    pub fn with_user_agent(server: &Server, user_agent: &str) -> Result<Self> {
        Self::browsing_with(server, Some(user_agent))
    }

    fn browsing_with(server: &Server, user_agent: Option<&str>) -> Result<Self> {
        let mut http = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(Policy::limited(10));
        if let Some(user_agent) = user_agent {
            http = http.user_agent(user_agent);
        }
        Ok(Self {
            http: http.build()?,
            base: server.url.clone(),
        })
    }

    fn absolute(&self, path_or_url: &str) -> String {
        if path_or_url.starts_with("http") {
            path_or_url.to_owned()
        } else {
            format!("{}{path_or_url}", self.base)
        }
    }

    pub async fn get(&self, path_or_url: &str) -> Result<Page> {
        let response = self.http.get(self.absolute(path_or_url)).send().await?;
        Ok(Page {
            url: response.url().to_string(),
            status: response.status(),
            html: response.text().await?,
        })
    }

    /// Submits a form as the browser would (same-origin `Origin` header, cookies).
    pub async fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> Result<Page> {
        let response = self
            .http
            .post(self.absolute(path))
            .header("origin", &self.base)
            .form(fields)
            .send()
            .await?;
        Ok(Page {
            url: response.url().to_string(),
            status: response.status(),
            html: response.text().await?,
        })
    }

    /// Opens `/device?user_code=…`, checks it shows the code, and presses `decision`.
    pub async fn decide_device_code(&self, user_code: &str, decision: Decision) -> Result<Page> {
        let page = self.get(&format!("/device?user_code={user_code}")).await?;
        if !page.contains(user_code) {
            bail!("the device page does not show {user_code}: {}", page.html);
        }
        let decision = match decision {
            Decision::Approve => "approve",
            Decision::Deny => "deny",
        };
        let result = self
            .post_form(
                "/device/decide",
                &[
                    ("csrf", &page.csrf()?),
                    ("user_code", user_code),
                    ("decision", decision),
                ],
            )
            .await?;
        if !result.status.is_success() {
            bail!(
                "deciding {user_code} failed ({}): {}",
                result.status,
                result.html
            );
        }
        Ok(result)
    }

    /// The signed-in account's live API keys, as `GET /v1/api-keys` lists them.
    pub async fn api_keys(&self) -> Result<Vec<serde_json::Value>> {
        let mut keys: serde_json::Value = self
            .http
            .get(format!("{}/v1/api-keys", self.base))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        match keys["api_keys"].take() {
            serde_json::Value::Array(keys) => Ok(keys),
            _ => anyhow::bail!("no api_keys in the listing"),
        }
    }

    /// Revokes the signed-in account's first live API key, as its account page does.
    pub async fn revoke_first_api_key(&self) -> Result<()> {
        let listed = self.api_keys().await?;
        let id = listed
            .first()
            .and_then(|key| key["id"].as_str())
            .context("no live API key to revoke")?;
        let revoked = self
            .http
            .delete(format!("{}/v1/api-keys/{id}", self.base))
            .header("origin", &self.base)
            .send()
            .await?;
        anyhow::ensure!(
            revoked.status() == 204,
            "revoking answered {}",
            revoked.status()
        );
        Ok(())
    }

    /// How many live API keys the signed-in account has.
    pub async fn api_key_count(&self) -> Result<usize> {
        Ok(self.api_keys().await?.len())
    }

    /// Signs up: the browser keeps the sign-up receipt, not a session (the verification link
    /// opened by this person signs them in; `sign_in` works before that, unverified).
    pub async fn sign_up(&self, email: &str, password: &str) -> Result<Page> {
        let form = self.get("/signup").await?;
        let page = self
            .post_form(
                "/signup",
                &[
                    ("csrf", &form.csrf()?),
                    ("email", email),
                    ("password", password),
                    ("next", ""),
                ],
            )
            .await?;
        if !page.status.is_success() || !page.contains("Check your email") {
            bail!("sign-up failed ({}): {}", page.status, page.html);
        }
        Ok(page)
    }

    pub async fn open_verification_link(&self, server: &Server, email: &str) -> Result<Page> {
        let link = server.verification_link(email)?;
        self.get(&link).await
    }

    pub async fn sign_in(&self, email: &str, password: &str) -> Result<Page> {
        let form = self.get("/signin").await?;
        self.post_form(
            "/signin",
            &[
                ("csrf", &form.csrf()?),
                ("email", email),
                ("password", password),
                ("next", ""),
            ],
        )
        .await
    }

    /// A verified, signed-in account.
    pub async fn verified_account(server: &Server, email: &str, password: &str) -> Result<Self> {
        let person = Self::new(server)?;
        person.sign_up(email, password).await?;
        person.open_verification_link(server, email).await?;
        Ok(person)
    }

    /// Creates an API key through the JSON API with the browser session; returns the response.
    pub async fn create_api_key(&self, name: &str) -> Result<serde_json::Value> {
        let response = self
            .http
            .post(format!("{}/v1/api-keys", self.base))
            .header("origin", &self.base)
            .json(&serde_json::json!({ "name": name }))
            .send()
            .await?;
        if response.status() != StatusCode::CREATED {
            bail!("creating an API key failed: {}", response.status());
        }
        Ok(response.json().await?)
    }

    /// A new org `slug` owned by this person; returns its id.
    pub async fn create_org(&self, slug: &str) -> Result<String> {
        let response = self
            .http
            .post(format!("{}/v1/orgs", self.base))
            .header("origin", &self.base)
            .json(&serde_json::json!({ "slug": slug }))
            .send()
            .await?;
        if response.status() != StatusCode::CREATED {
            bail!("creating the org {slug} failed: {}", response.status());
        }
        let org: serde_json::Value = response.json().await?;
        org["id"]
            .as_str()
            .map(str::to_owned)
            .context("the answer holds no id")
    }

    /// `GET /v1/me` with the session: who this person is on the server.
    pub async fn me(&self) -> Result<serde_json::Value> {
        Ok(self
            .http
            .get(format!("{}/v1/me", self.base))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }

    /// A new API key for the signed-in account: just the key.
    pub async fn new_api_key(&self, name: &str) -> Result<String> {
        let created = self.create_api_key(name).await?;
        created["api_key"]
            .as_str()
            .map(str::to_owned)
            .context("the answer holds no api_key")
    }

    /// Opens the approval page at `url` and presses Approve.
    pub async fn approve(&self, url: &str) -> Result<Page> {
        self.approval_form(url)
            .await?
            .submit(self, Decision::Approve)
            .await
    }

    pub async fn deny(&self, url: &str) -> Result<Page> {
        self.approval_form(url)
            .await?
            .submit(self, Decision::Deny)
            .await
    }

    /// Opens the approval page at `url` without pressing anything yet.
    pub async fn approval_form(&self, url: &str) -> Result<ApprovalForm> {
        let page = self.get(url).await?;
        let token_flow_id = page
            .input("token_flow_id")
            .with_context(|| format!("no decision form on {}: {}", page.url, page.html))?;
        Ok(ApprovalForm {
            csrf: page.csrf()?,
            token_flow_id,
        })
    }
}

/// The Approve / Deny buttons of an opened approval page.
#[derive(Debug, Clone)]
pub struct ApprovalForm {
    csrf: String,
    pub token_flow_id: String,
}

#[derive(Debug, Clone, Copy)]
pub enum Decision {
    Approve,
    Deny,
}

impl ApprovalForm {
    pub async fn submit(&self, person: &Person, decision: Decision) -> Result<Page> {
        let action = match decision {
            Decision::Approve => "/login/cli/approve",
            Decision::Deny => "/login/cli/deny",
        };
        let result = person
            .post_form(
                action,
                &[("csrf", &self.csrf), ("token_flow_id", &self.token_flow_id)],
            )
            .await?;
        if !result.status.is_success() {
            bail!("{action} failed ({}): {}", result.status, result.html);
        }
        Ok(result)
    }
}
