//! TLS (rustls, ring provider) for the main listener: a PEM certificate chain and a PEM private
//! key (refused unless mode 0600, as every key file here).

use std::path::Path;
use std::sync::Arc;

/// Loads the certificate chain and key into a rustls server config (HTTP/1.1 via ALPN).
pub fn server_config(
    cert_file: &Path,
    key_file: &Path,
) -> Result<Arc<rustls::ServerConfig>, String> {
    let cert_pem = std::fs::read(cert_file).map_err(|e| format!("{}: {e}", cert_file.display()))?;
    let certs = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: not PEM certificates: {e}", cert_file.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in the file", cert_file.display()));
    }
    let key_text = ledger::keys::read_secret_file(key_file).map_err(|e| e.to_string())?;
    let key = rustls_pemfile::private_key(&mut key_text.as_bytes())
        .map_err(|e| format!("{}: not a PEM private key: {e}", key_file.display()))?
        .ok_or_else(|| format!("{}: no private key in the file", key_file.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("{}: {e}", cert_file.display()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
