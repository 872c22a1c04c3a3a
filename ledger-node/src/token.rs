//! Access tokens for the admin (and later query) endpoints. The config holds only a hash of
//! each secret (SHA-256 or BLAKE3, hex), a name and scopes; a request presents
//! `Authorization: Bearer <secret>`. The presented secret is hashed and compared with every
//! configured hash in constant time (no early exit), so timing says nothing about which
//! hash, or which prefix of it, matched. No token, no data.

use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

/// What a token may do.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Scope {
    /// Enroll gateways, list enrollments and evidence.
    Admin,
    /// Query blocks: of every unit (`query`), or of one unit id (`query:VIN123`).
    Query(Option<String>),
}

impl Scope {
    pub fn parse(s: &str) -> Result<Scope, String> {
        match s {
            "admin" => Ok(Scope::Admin),
            "query" => Ok(Scope::Query(None)),
            q if q.starts_with("query:") && q.len() > 6 => {
                Ok(Scope::Query(Some(q[6..].to_owned())))
            }
            other => Err(format!("unknown scope {other:?} (known: admin, query, query:<unit>)")),
        }
    }

    /// Whether a token holding `self` may do `needed`.
    pub fn grants(&self, needed: &Scope) -> bool {
        match (self, needed) {
            (Scope::Admin, Scope::Admin) => true,
            (Scope::Query(None), Scope::Query(_)) => true,
            (Scope::Query(Some(a)), Scope::Query(Some(b))) => a == b,
            _ => false,
        }
    }
}

/// A configured token hash.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum TokenHash {
    Sha256([u8; 32]),
    Blake3([u8; 32]),
}

fn hex32(text: &str) -> Result<[u8; 32], String> {
    let t = text.trim();
    if t.len() != 64 || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("want 64 hex digits, got {} characters", t.len()));
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&t[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
    }
    Ok(out)
}

impl TokenHash {
    pub fn sha256_hex(text: &str) -> Result<TokenHash, String> {
        hex32(text).map(TokenHash::Sha256)
    }
    pub fn blake3_hex(text: &str) -> Result<TokenHash, String> {
        hex32(text).map(TokenHash::Blake3)
    }
}

#[derive(Clone, Debug)]
struct Token {
    name: String,
    hash: TokenHash,
    scopes: Vec<Scope>,
}

/// The configured tokens.
#[derive(Clone, Debug, Default)]
pub struct TokenSet {
    tokens: Vec<Token>,
}

/// Why a request is not allowed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Denied {
    /// 401: no token, or not one of ours.
    Unauthenticated,
    /// 403: a valid token without the scope.
    MissingScope,
}

impl TokenSet {
    pub fn add(&mut self, name: String, hash: TokenHash, scopes: Vec<Scope>) {
        self.tokens.push(Token { name, hash, scopes });
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Checks an `Authorization` header value for `scope`; returns the token's name.
    pub fn check(&self, authorization: Option<&[u8]>, scope: &Scope) -> Result<&str, Denied> {
        let secret = authorization
            .and_then(|h| h.strip_prefix(b"Bearer "))
            .filter(|s| !s.is_empty())
            .ok_or(Denied::Unauthenticated)?;
        let sha: [u8; 32] = Sha256::digest(secret).into();
        let b3: [u8; 32] = *blake3::hash(secret).as_bytes();
        let mut found: Option<&Token> = None;
        for t in &self.tokens {
            let eq = match &t.hash {
                TokenHash::Sha256(h) => h.ct_eq(&sha),
                TokenHash::Blake3(h) => h.ct_eq(&b3),
            };
            if bool::from(eq) && found.is_none() {
                found = Some(t);
            }
        }
        let t = found.ok_or(Denied::Unauthenticated)?;
        if t.scopes.iter().any(|s| s.grants(scope)) {
            Ok(&t.name)
        } else {
            Err(Denied::MissingScope)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha_hex(s: &str) -> String {
        Sha256::digest(s.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn only_a_configured_secret_with_the_scope_passes() {
        let mut t = TokenSet::default();
        t.add("ops".into(), TokenHash::sha256_hex(&sha_hex("s3cret")).unwrap(), vec![Scope::Admin]);
        let b3 = blake3::hash(b"other").to_hex().to_string();
        t.add("b3".into(), TokenHash::blake3_hex(&b3).unwrap(), vec![Scope::Admin]);
        t.add(
            "fleet".into(),
            TokenHash::sha256_hex(&sha_hex("q1")).unwrap(),
            vec![Scope::parse("query:VIN1").unwrap()],
        );
        assert_eq!(t.check(Some(b"Bearer s3cret"), &Scope::Admin), Ok("ops"));
        assert_eq!(t.check(Some(b"Bearer other"), &Scope::Admin), Ok("b3"));
        assert_eq!(t.check(Some(b"Bearer q1"), &Scope::Query(Some("VIN1".into()))), Ok("fleet"));
        assert_eq!(
            t.check(Some(b"Bearer q1"), &Scope::Query(Some("VIN2".into()))),
            Err(Denied::MissingScope)
        );
        assert_eq!(t.check(Some(b"Bearer q1"), &Scope::Admin), Err(Denied::MissingScope));
        assert_eq!(t.check(Some(b"Bearer s3cret"), &Scope::Query(None)), Err(Denied::MissingScope));
        for bad in [
            None,
            Some(&b"Bearer "[..]),
            Some(b"Bearer s3cre"),
            Some(b"s3cret"),
            Some(b"Basic s3cret"),
        ] {
            assert_eq!(t.check(bad, &Scope::Admin), Err(Denied::Unauthenticated), "{bad:?}");
        }
        assert!(TokenHash::sha256_hex("xyz").is_err());
        assert!(Scope::parse("root").is_err());
    }
}
