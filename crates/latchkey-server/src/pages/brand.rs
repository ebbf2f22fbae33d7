//! The tool maker's brand on every page and mail: product name, logo, accent colour, support
//! link and footer (`[brand]` in the config file). One brand per process, set at start.

use std::sync::OnceLock;

use thiserror::Error;

/// `[brand]`, as written in the file.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrandOptions {
    pub product_name: Option<String>,
    pub logo_url: Option<String>,
    pub accent_color: Option<String>,
    pub support_url: Option<String>,
    pub terms_url: Option<String>,
    pub privacy_url: Option<String>,
    pub footer: Option<String>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum BrandError {
    #[error("[brand] product_name must be 1 to 60 characters, without control characters")]
    ProductName,
    #[error("[brand] accent_color {0:?} is not a colour: write it as #rgb or #rrggbb")]
    AccentColor(String),
    #[error("[brand] {0} {1:?} is not an http(s) URL")]
    Url(&'static str, String),
    #[error("[brand] footer must be at most 500 characters of plain text")]
    Footer,
}

/// The brand, checked: every value is safe to put in a page as it is (escaped by the
/// templates; URLs are http(s) only, the colour a hex triple).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Brand {
    pub product_name: String,
    pub logo_url: Option<String>,
    pub accent_color: String,
    pub support_url: Option<String>,
    pub terms_url: Option<String>,
    pub privacy_url: Option<String>,
    pub footer: Option<String>,
}

impl Default for Brand {
    fn default() -> Self {
        Self {
            product_name: "latchkey".into(),
            logo_url: None,
            accent_color: "#1d4ed8".into(),
            support_url: None,
            terms_url: None,
            privacy_url: None,
            footer: None,
        }
    }
}

fn web_url(what: &'static str, raw: Option<String>) -> Result<Option<String>, BrandError> {
    raw.map(|raw| match url::Url::parse(raw.trim()) {
        Ok(url) if matches!(url.scheme(), "https" | "http") && url.host().is_some() => {
            Ok(url.to_string())
        }
        _ => Err(BrandError::Url(what, raw)),
    })
    .transpose()
}

fn is_hex_colour(raw: &str) -> bool {
    raw.strip_prefix('#')
        .is_some_and(|hex| matches!(hex.len(), 3 | 6) && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

impl Brand {
    pub fn from_options(options: BrandOptions) -> Result<Self, BrandError> {
        let defaults = Self::default();
        let product_name = match options.product_name {
            Some(name) => {
                let name = name.trim().to_owned();
                if name.is_empty()
                    || name.chars().count() > 60
                    || name.chars().any(char::is_control)
                {
                    return Err(BrandError::ProductName);
                }
                name
            }
            None => defaults.product_name,
        };
        let accent_color = match options.accent_color {
            Some(colour) if is_hex_colour(colour.trim()) => colour.trim().to_ascii_lowercase(),
            Some(colour) => return Err(BrandError::AccentColor(colour)),
            None => defaults.accent_color,
        };
        let footer = options.footer.map(|f| f.trim().to_owned());
        if footer.as_ref().is_some_and(|f| {
            f.chars().count() > 500 || f.chars().any(|c| c.is_control() && c != '\n')
        }) {
            return Err(BrandError::Footer);
        }
        Ok(Self {
            product_name,
            logo_url: web_url("logo_url", options.logo_url)?,
            accent_color,
            support_url: web_url("support_url", options.support_url)?,
            terms_url: web_url("terms_url", options.terms_url)?,
            privacy_url: web_url("privacy_url", options.privacy_url)?,
            footer,
        })
    }

    /// What mails end with: the product, where to get help, the footer.
    pub fn mail_signature(&self) -> String {
        let mut signature = format!("\n-- \n{}", self.product_name);
        if let Some(support) = &self.support_url {
            signature.push_str(&format!("\nHelp: {support}"));
        }
        if let Some(footer) = &self.footer {
            signature.push_str(&format!("\n{footer}"));
        }
        signature.push('\n');
        signature
    }
}

static CURRENT: OnceLock<Brand> = OnceLock::new();

/// Makes `brand` the one every page shows; the first call wins (one brand per process).
pub fn install(brand: Brand) {
    let _ = CURRENT.set(brand);
}

/// The brand pages show: the installed one, or latchkey's own.
pub fn current() -> &'static Brand {
    CURRENT.get_or_init(Brand::default)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> BrandOptions {
        BrandOptions {
            product_name: Some(" Acme Cloud ".into()),
            logo_url: Some("https://acme.example/logo.svg".into()),
            accent_color: Some("#E11D48".into()),
            support_url: Some("https://acme.example/help".into()),
            terms_url: None,
            privacy_url: None,
            footer: Some("Acme Inc., 1 Main St".into()),
        }
    }

    #[test]
    fn a_brand_is_checked_and_normalised() {
        let brand = Brand::from_options(options()).expect("valid");
        assert_eq!(brand.product_name, "Acme Cloud");
        assert_eq!(brand.accent_color, "#e11d48");
        assert!(
            brand
                .mail_signature()
                .contains("Acme Cloud\nHelp: https://acme.example/help")
        );
        assert_eq!(
            Brand::from_options(BrandOptions::default()),
            Ok(Brand::default())
        );
    }

    #[test]
    fn what_could_break_a_page_is_refused() {
        for colour in [
            "red",
            "#12345",
            "#1234567",
            "e11d48",
            "#e11d4g",
            "#fff;}body{x",
        ] {
            let refused = Brand::from_options(BrandOptions {
                accent_color: Some(colour.into()),
                ..options()
            });
            assert!(
                matches!(refused, Err(BrandError::AccentColor(_))),
                "{colour}"
            );
        }
        for url in [
            "javascript:alert(1)",
            "data:text/html,hi",
            "/relative",
            "ftp://x.example/",
        ] {
            let refused = Brand::from_options(BrandOptions {
                logo_url: Some(url.into()),
                ..options()
            });
            assert!(
                matches!(refused, Err(BrandError::Url("logo_url", _))),
                "{url}"
            );
        }
        for name in ["", "  ", "a\u{7}b", &"x".repeat(61)] {
            let refused = Brand::from_options(BrandOptions {
                product_name: Some(name.into()),
                ..options()
            });
            assert_eq!(refused, Err(BrandError::ProductName), "{name:?}");
        }
    }
}
