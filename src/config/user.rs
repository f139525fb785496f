//! A `USER[:GROUP]` privilege-drop target, as the config (`[interface]
//! user`) and `PHANTOMMESH_USER` give it. Only the syntax is checked here;
//! `daemon::privdrop` resolves it against the user databases.

/// A `USER[:GROUP]` spec: names or numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSpec {
    pub user: String,
    pub group: Option<String>,
}

impl UserSpec {
    pub fn parse(s: &str) -> Result<UserSpec, String> {
        let (u, g) = match s.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (s, None),
        };
        let valid = |x: &str| {
            !x.is_empty()
                && x.len() <= 32
                && x.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        };
        if !valid(u) || g.is_some_and(|g| !valid(g)) {
            return Err(format!(
                "invalid user {s:?}: expected NAME or UID, optionally :GROUP or :GID"
            ));
        }
        if u == "0" || u == "root" {
            return Err(format!(
                "user {s:?}: dropping to root drops nothing; use the opt-out instead"
            ));
        }
        Ok(UserSpec {
            user: u.into(),
            group: g.map(Into::into),
        })
    }
}
