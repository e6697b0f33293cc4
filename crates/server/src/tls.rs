//! TLS with rustls: certificates from config (several, chosen by SNI), or a
//! self-signed one generated into the data dir; reloadable on SIGHUP without
//! dropping sessions (the acceptor stays; only the certificates it picks from change).

use crate::config::Certificate;
use anyhow::{Context, anyhow};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// Certificates the server can present, swappable at run time.
#[derive(Debug)]
pub struct CertificateStore {
    entries: RwLock<Vec<Entry>>,
    sources: Vec<Certificate>,
}

#[derive(Debug)]
struct Entry {
    key: Arc<CertifiedKey>,
    /// DER of the end-entity certificate, to check SNI names against.
    leaf: CertificateDer<'static>,
}

fn load_pair(pair: &Certificate) -> anyhow::Result<Entry> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&pair.cert)
        .with_context(|| format!("cannot read certificate {}", pair.cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("bad PEM in {}", pair.cert.display()))?;
    let leaf = chain
        .first()
        .cloned()
        .ok_or_else(|| anyhow!("{}: no certificate in file", pair.cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(&pair.key)
        .with_context(|| format!("cannot read key {}", pair.key.display()))?;
    let provider = rustls::crypto::ring::default_provider();
    let certified = CertifiedKey::from_der(chain, key, &provider).with_context(|| {
        format!(
            "{} and {} do not form a usable pair",
            pair.cert.display(),
            pair.key.display()
        )
    })?;
    Ok(Entry {
        key: Arc::new(certified),
        leaf,
    })
}

impl CertificateStore {
    pub fn load(sources: Vec<Certificate>) -> anyhow::Result<Self> {
        let entries = sources
            .iter()
            .map(load_pair)
            .collect::<anyhow::Result<Vec<_>>>()?;
        if entries.is_empty() {
            return Err(anyhow!("no certificates"));
        }
        Ok(CertificateStore {
            entries: RwLock::new(entries),
            sources,
        })
    }

    /// Re-reads every certificate file. On any error the old set stays in use.
    pub fn reload(&self) -> anyhow::Result<usize> {
        let fresh = self
            .sources
            .iter()
            .map(load_pair)
            .collect::<anyhow::Result<Vec<_>>>()?;
        let count = fresh.len();
        *self.entries.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(count)
    }
}

impl ResolvesServerCert for CertificateStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        if let Some(name) = hello
            .server_name()
            .and_then(|n| ServerName::try_from(n.to_string()).ok())
        {
            for entry in entries.iter() {
                let matches = webpki::EndEntityCert::try_from(&entry.leaf)
                    .map(|cert| cert.verify_is_valid_for_subject_name(&name).is_ok())
                    .unwrap_or(false);
                if matches {
                    return Some(entry.key.clone());
                }
            }
        }
        entries.first().map(|e| e.key.clone())
    }
}

/// Writes a self-signed certificate for `hostname` into `dir` if none is there yet.
pub fn ensure_self_signed(dir: &Path, hostname: &str) -> anyhow::Result<Certificate> {
    let cert: PathBuf = dir.join("selfsigned.crt");
    let key: PathBuf = dir.join("selfsigned.key");
    if !(cert.exists() && key.exists()) {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let names = vec![hostname.to_string(), "localhost".to_string()];
        let generated = rcgen::generate_simple_self_signed(names)
            .context("generate self-signed certificate")?;
        write_private(&key, generated.signing_key.serialize_pem().as_bytes())?;
        std::fs::write(&cert, generated.cert.pem())
            .with_context(|| format!("write {}", cert.display()))?;
        tracing::warn!(event = "tls_self_signed", cert = %cert.display(), "no certificate configured: wrote a self-signed one; clients will not trust it");
    }
    Ok(Certificate { cert, key })
}

fn write_private(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("write {}", path.display()))?;
    file.write_all(data)?;
    file.sync_all()?;
    Ok(())
}

pub fn acceptor(certificates: Arc<CertificateStore>) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_cert_resolver(certificates);
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
