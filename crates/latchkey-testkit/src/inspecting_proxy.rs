//! A corporate TLS-inspecting proxy in miniature: it answers `CONNECT host:port`, terminates
//! TLS with a certificate for that host signed by its own CA (which clients trust only through
//! `SSL_CERT_FILE`), and forwards the decrypted stream to one upstream address.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use anyhow::Result;
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tokio_rustls::{
    TlsAcceptor,
    rustls::{
        self,
        pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer},
    },
};

#[derive(Debug)]
pub struct InspectingProxy {
    /// `http://127.0.0.1:<port>`, for `HTTPS_PROXY`.
    pub url: String,
    /// The proxy's CA certificate, PEM, for `SSL_CERT_FILE`.
    pub ca_pem: String,
    /// The target of every request seen (`host:port` of a `CONNECT`), in order.
    pub connects: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl InspectingProxy {
    /// Intercepts TLS for `host` and forwards it to `upstream` (plain HTTP).
    pub async fn start(host: &str, upstream: SocketAddr) -> Result<Self> {
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key)?;
        let leaf_key = KeyPair::generate()?;
        let leaf =
            CertificateParams::new(vec![host.to_owned()])?.signed_by(&leaf_key, &ca, &ca_key)?;
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(leaf.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        )?;
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let url = format!("http://{}", listener.local_addr()?);
        let connects = Arc::new(Mutex::new(Vec::new()));
        let seen = connects.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (acceptor, seen) = (acceptor.clone(), seen.clone());
                tokio::spawn(async move {
                    let _ = intercept(client, acceptor, upstream, seen).await;
                });
            }
        });
        Ok(Self {
            url,
            ca_pem: ca.pem(),
            connects,
            task,
        })
    }

    pub fn connects(&self) -> Vec<String> {
        self.connects.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

impl Drop for InspectingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn intercept(
    mut client: TcpStream,
    acceptor: TlsAcceptor,
    upstream: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
) -> Result<()> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        client.read_exact(&mut byte).await?;
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    let mut request_line = head.split_whitespace();
    let method = request_line.next().unwrap_or_default().to_owned();
    if let (Some(target), Ok(mut seen)) = (request_line.next(), seen.lock()) {
        seen.push(target.to_owned());
    }
    anyhow::ensure!(method == "CONNECT", "only CONNECT is proxied");
    client
        .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        .await?;
    let mut tls = acceptor.accept(client).await?;
    let mut server = TcpStream::connect(upstream).await?;
    tokio::io::copy_bidirectional(&mut tls, &mut server).await?;
    Ok(())
}
