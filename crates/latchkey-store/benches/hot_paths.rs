//! The per-request hot paths. API key verification (parse + checksum + SHA-256 + cached lookup),
//! a refusal by checksum, a cold lookup in SQLite, and, for the ratio, what the seed design does
//! per request (a bcrypt cost-12 check); access tokens of each algorithm (EdDSA, RS256, ES256):
//! verifying one (header, key, signature, claims) and issuing one; and an OpenID Connect ID
//! token. `cargo bench -p latchkey-store --bench hot_paths`

#![allow(clippy::expect_used, clippy::disallowed_methods)]

use std::sync::Arc;

use async_trait::async_trait;
use criterion::{Criterion, criterion_group, criterion_main};
use latchkey_core::{
    AccessGrant, Mail, MailError, Mailer, Policy, Service, Store, SystemClock,
    signing::IdTokenGrant,
    store::{Org, User},
};
use latchkey_proto::jws::Algorithm;
use latchkey_store::SqliteStore;

struct NoMail;

#[async_trait]
impl Mailer for NoMail {
    async fn send(&self, _: Mail) -> Result<(), MailError> {
        Ok(())
    }
}

const ISSUER: &str = "http://127.0.0.1:8080";

fn service(rt: &tokio::runtime::Runtime, dir: &std::path::Path) -> (Arc<SqliteStore>, Service) {
    let store = Arc::new(
        rt.block_on(SqliteStore::open(&dir.join("bench.db")))
            .expect("store"),
    );
    let service = Service::new(
        store.clone(),
        Arc::new(SystemClock),
        Arc::new(NoMail),
        Policy::new(ISSUER),
    );
    (store, service)
}

fn bench_user() -> User {
    User {
        id: "usr_bench".into(),
        email: "bench@example.com".into(),
        email_verified: true,
        name: Some("Bench Person".into()),
        password_hash: String::new(),
        created_at: time::OffsetDateTime::now_utc(),
        disabled_at: None,
        org: Org {
            id: "org_bench".into(),
            slug: "bench".into(),
            name: "bench".into(),
        },
    }
}

fn verification(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, service) = service(&rt, dir.path());
    let user = bench_user();
    rt.block_on(store.create_user(&user)).expect("user");
    let (key, record) = rt
        .block_on(service.create_api_key(
            &user,
            &latchkey_proto::wire::ApiKeyCreateRequest::default(),
            None,
        ))
        .expect("key");
    let key = key.expose_secret().to_owned();
    rt.block_on(service.verify_api_key(&key))
        .expect("warm the cache");

    c.bench_function("verify_api_key/cached", |b| {
        b.iter(|| {
            rt.block_on(service.verify_api_key(std::hint::black_box(&key)))
                .expect("valid")
        })
    });
    let mut typo = key.clone().into_bytes();
    typo[10] = if typo[10] == b'a' { b'b' } else { b'a' };
    let typo = String::from_utf8(typo).expect("ascii");
    c.bench_function("verify_api_key/bad_checksum", |b| {
        b.iter(|| {
            rt.block_on(service.verify_api_key(std::hint::black_box(&typo)))
                .expect_err("refused")
        })
    });
    c.bench_function("sqlite/api_key_by_hash (cold lookup)", |b| {
        b.iter(|| {
            rt.block_on(store.api_key_by_hash(&record.hash))
                .expect("found")
        })
    });
}

/// Access tokens of each algorithm: what a resource server (or the gate) does per request, and
/// what the token endpoint does per token; then an ID token (RS256, the OIDC default). None
/// touches the store.
fn access_tokens(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let (_store, service) = service(&rt, dir.path());
    rt.block_on(service.load_signing_keys()).expect("keys");
    for alg in Algorithm::ALL {
        let grant = AccessGrant {
            user_id: "usr_bench".into(),
            org_id: "org_bench".into(),
            client_id: "latchkey-cli".into(),
            scope: "openid offline_access".into(),
            resource: None,
            login: None,
            alg: Some(alg),
            lifetime: None,
            standing: Default::default(),
        };
        let token = service.issue_access_token(&grant).expect("issued").token;
        c.bench_function(&format!("access_token/verify/{alg}"), |b| {
            b.iter(|| {
                service
                    .verify_access_token(std::hint::black_box(&token), ISSUER)
                    .expect("valid")
            })
        });
        c.bench_function(&format!("access_token/issue/{alg}"), |b| {
            b.iter(|| {
                service
                    .issue_access_token(std::hint::black_box(&grant))
                    .expect("issued")
            })
        });
    }
    let user = bench_user();
    let access_token = "an access token issued with the ID token";
    for alg in Algorithm::ALL {
        let grant = IdTokenGrant {
            user: &user,
            client_id: "cl_bench",
            scope: "openid email profile",
            auth_time: time::OffsetDateTime::now_utc(),
            nonce: Some("n-0S6_WzA2Mj"),
            access_token,
            alg,
        };
        c.bench_function(&format!("id_token/issue/{alg}"), |b| {
            b.iter(|| {
                service
                    .issue_id_token(std::hint::black_box(&grant))
                    .expect("issued")
            })
        });
    }
}

/// The seed gate compared every presented key against a bcrypt hash (cost 12) on each request.
fn seed_bcrypt(c: &mut Criterion) {
    let key = "lk_seedcomparisonkey0123456789abcdef";
    let hash = bcrypt::hash(key, 12).expect("bcrypt hash");
    let mut group = c.benchmark_group("seed");
    group.sample_size(10);
    group.bench_function("bcrypt_verify (cost 12)", |b| {
        b.iter(|| bcrypt::verify(std::hint::black_box(key), &hash).expect("verifies"))
    });
    group.finish();
}

criterion_group!(benches, verification, access_tokens, seed_bcrypt);
criterion_main!(benches);
