//! TLS in the host: certificates from PEM files, TLS 1.2 and 1.3 only,
//! SNI choosing among certificates, and a self-signed certificate for a
//! first run.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{self, ServerConfig, ServerConnection};

use crate::bindings::TlsInfo;
use crate::config::{SniCertificate, TlsFiles};

/// Build the acceptor of a listener: its default certificate, plus the
/// certificates chosen by SNI name. TLS 1.2 and 1.3 only. Errors name the
/// file at fault.
pub fn acceptor(
    default: &TlsFiles,
    sni: &[SniCertificate],
) -> anyhow::Result<TlsAcceptor> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut by_name = HashMap::new();
    for entry in sni {
        let files = TlsFiles {
            certificate: entry.certificate.clone(),
            key: entry.key.clone(),
        };
        let certified = certified_key(&files, &provider)?;
        for name in &entry.names {
            by_name.insert(name.to_ascii_lowercase(), certified.clone());
        }
    }
    let resolver = SniResolver {
        default: certified_key(default, &provider)?,
        by_name,
    };

    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[
            &rustls::version::TLS13,
            &rustls::version::TLS12,
        ])
        .context("TLS 1.2 and 1.3 are unavailable")?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = Vec::new();

    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn certified_key(
    files: &TlsFiles,
    provider: &CryptoProvider,
) -> anyhow::Result<Arc<CertifiedKey>> {
    let chain = load_chain(&files.certificate)?;
    let key = load_key(&files.key)?;
    let certified =
        CertifiedKey::from_der(chain, key, provider).with_context(|| {
            format!(
                "certificate `{}` does not match key `{}`",
                files.certificate.display(),
                files.key.display()
            )
        })?;
    Ok(Arc::new(certified))
}

/// Picks the certificate for the server name a client asks for, or the
/// default one for an unknown name or none.
#[derive(Debug)]
struct SniResolver {
    default: Arc<CertifiedKey>,
    by_name: HashMap<String, Arc<CertifiedKey>>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let chosen = hello
            .server_name()
            .and_then(|name| self.by_name.get(&name.to_ascii_lowercase()));
        Some(chosen.unwrap_or(&self.default).clone())
    }
}

fn load_chain(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path).with_context(|| {
        format!("failed to read certificate `{}`", path.display())
    })?;
    let chain = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| {
            format!("certificate `{}` is not valid PEM", path.display())
        })?;
    if chain.is_empty() {
        bail!("certificate `{}` holds no certificate", path.display());
    }
    Ok(chain)
}

fn load_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    let pem = std::fs::read(path)
        .with_context(|| format!("failed to read key `{}`", path.display()))?;
    match rustls_pemfile::private_key(&mut pem.as_slice()) {
        Ok(Some(key)) => Ok(key),
        Ok(None) => bail!("key `{}` holds no private key", path.display()),
        Err(err) => bail!("key `{}` is not valid PEM: {err}", path.display()),
    }
}

/// The session facts of an established TLS connection.
pub fn session_facts(conn: &ServerConnection) -> TlsInfo {
    let version = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_owned(),
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_owned(),
        Some(other) => format!("{other:?}"),
        None => "unknown".to_owned(),
    };
    let cipher = conn
        .negotiated_cipher_suite()
        .map(|suite| format!("{:?}", suite.suite()))
        .unwrap_or_else(|| "unknown".to_owned());

    TlsInfo {
        version,
        cipher,
        server_name: conn.server_name().map(str::to_owned),
    }
}

/// Write a self-signed certificate for `localhost` to `files`, unless both
/// files exist already. Keys are written readable by the owner only.
pub fn ensure_self_signed(files: &TlsFiles) -> anyhow::Result<bool> {
    if files.certificate.exists() && files.key.exists() {
        return Ok(false);
    }

    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let generated = rcgen::generate_simple_self_signed(names)
        .context("failed to generate a self-signed certificate")?;
    for path in [&files.certificate, &files.key] {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| {
                format!("failed to create directory `{}`", parent.display())
            })?;
        }
    }

    write_private(&files.key, generated.key_pair.serialize_pem().as_bytes())?;
    std::fs::write(&files.certificate, generated.cert.pem()).with_context(
        || {
            format!(
                "failed to write certificate `{}`",
                files.certificate.display()
            )
        },
    )?;
    Ok(true)
}

fn write_private(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;

    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("failed to write key `{}`", path.display()))?;
    file.write_all(data)
        .with_context(|| format!("failed to write key `{}`", path.display()))
}
