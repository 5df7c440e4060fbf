//! Property tests of what the auth routes and the upgrade read from strangers: the
//! JSON body of `register`/`login` (axum's `Json` decoding, which the routes run), the
//! token in a bearer header or a `?token=` query (percent-decoded by hand) and the JWT
//! parser behind both. Arbitrary input never panics; a body or token the server made
//! comes back unchanged; a token changed anywhere is refused or names the same user.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, header};
use proptest::prelude::*;

use crate::auth::{Auth, Credentials, Subject, TokenError, valid_password, valid_user_name};

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

fn auth() -> Auth {
    Auth::new(b"property-tests-secret-0123456789", Duration::from_secs(3600)).unwrap()
}

/// Strings shaped like a JWT: three dot-separated base64url-ish parts, or anything.
fn token_like() -> impl Strategy<Value = String> {
    prop_oneof!["[A-Za-z0-9_=+/-]{0,40}\\.[A-Za-z0-9_=+/-]{0,80}\\.[A-Za-z0-9_=+/-]{0,50}", any::<String>()]
}

proptest! {
    #![proptest_config(config(3_000))]

    #[test]
    fn any_body_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(Json(c)) = Json::<Credentials>::from_bytes(&bytes) {
            let _ = (valid_user_name(&c.username), valid_password(&c.password));
        }
    }

    #[test]
    fn a_json_body_with_any_fields_never_panics(
        fields in proptest::collection::btree_map("username|password|user|[a-z]{1,3}", any::<String>(), 0..4),
        number in any::<i64>(),
    ) {
        let mut object: serde_json::Map<String, serde_json::Value> =
            fields.into_iter().map(|(k, v)| (k, v.into())).collect();
        object.insert("n".into(), number.into());
        let _ = Json::<Credentials>::from_bytes(serde_json::to_string(&object).unwrap().as_bytes());
        object.remove("n");
        let _ = Json::<Credentials>::from_bytes(serde_json::to_string(&object).unwrap().as_bytes());
    }

    #[test]
    fn every_body_a_client_can_send_comes_back_unchanged(username in any::<String>(), password in any::<String>()) {
        let sent = Credentials { username, password };
        let Json(read) = Json::<Credentials>::from_bytes(&serde_json::to_vec(&sent).unwrap()).unwrap();
        prop_assert_eq!(read, sent);
    }

    #[test]
    fn any_token_in_a_header_or_a_query_never_panics(token in token_like(), query in any::<String>()) {
        let a = auth();
        prop_assert!(a.verify(&token).is_err());
        let mut headers = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_str(&format!("Bearer {token}")) {
            headers.insert(header::AUTHORIZATION, value);
            prop_assert!(a.from_request(&headers, None).is_err());
        }
        let r = a.from_request(&HeaderMap::new(), Some(&query));
        prop_assert!(r.is_err());
        let r = a.from_request(&HeaderMap::new(), Some(&format!("token={token}&{query}")));
        prop_assert!(r.is_err());
    }

    #[test]
    fn an_issued_token_names_its_user_and_a_changed_one_does_not_name_another(
        id in 1..=i64::MAX,
        name in any::<String>(),
        at in any::<prop::sample::Index>(),
        to in "[A-Za-z0-9_.=-]",
    ) {
        let a = auth();
        let token = a.issue(id, &name);
        let user = a.verify(&token).unwrap();
        prop_assert_eq!((&user.subject, &user.name), (&Subject::Account(id), &name));
        let encoded = token.replace('.', "%2E");
        prop_assert_eq!(a.from_request(&HeaderMap::new(), Some(&format!("x=1&token={encoded}"))).unwrap(), user.clone());
        let i = at.index(token.len());
        let changed = format!("{}{}{}", &token[..i], to, &token[i + 1..]);
        match a.verify(&changed) {
            Ok(other) => prop_assert_eq!(other, user),
            // Refused for whatever reason the change made (a bad signature, an algorithm
            // with no key, a claim gone): never taken as no token at all.
            Err(e) => prop_assert!(e != TokenError::Missing),
        }
    }
}
