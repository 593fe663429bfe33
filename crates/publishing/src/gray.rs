//! Gray rules: who is served a release before it is live for everyone.

use crate::PERCENT_BASIS_POINTS_MAX;
use serde::{Deserialize, Serialize};

/// Who gets a gray release: a user gets it when **any** rule matches.
///
/// Lists are kept sorted and without duplicates (the command may give them in any order; the
/// decided event carries the normalized rule).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrayRule {
    /// Share of users, in basis points (1 = 0.01 %, 10 000 = 100 %), chosen by
    /// [`gray_bucket`]: stable per user and release. Requires a `user_id` in the read context.
    #[serde(default)]
    pub percent_bp: Option<u16>,
    /// Explicit user ids.
    #[serde(default)]
    pub users: Vec<String>,
    /// Channels (for example `app`, `web`).
    #[serde(default)]
    pub channels: Vec<String>,
    /// Regions.
    #[serde(default)]
    pub regions: Vec<String>,
    /// Segments; a reader in any of them matches.
    #[serde(default)]
    pub segments: Vec<String>,
}

/// Who is reading: matched against gray rules. Every field is optional; a read without a
/// matching context gets the release live for everyone.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadContext {
    /// The user.
    #[serde(default)]
    pub user_id: Option<String>,
    /// The channel.
    #[serde(default)]
    pub channel: Option<String>,
    /// The region.
    #[serde(default)]
    pub region: Option<String>,
    /// The reader's segments.
    #[serde(default)]
    pub segments: Vec<String>,
}

/// The stable bucket of a user for a release, in `0..10_000` (basis points).
///
/// Defined as: the first 8 bytes of BLAKE3 of the UTF-8 text `"{release_id}:{user_id}"`, read as a
/// little-endian `u64`, modulo 10 000. A user is in a `percent_bp` rule when its bucket is below
/// `percent_bp`. The same user and release give the same bucket on every machine and version;
/// different releases pick independent samples.
#[must_use]
pub fn gray_bucket(release_id: u64, user_id: &str) -> u16 {
    let mut hasher = blake3::Hasher::new();
    hasher.update(release_id.to_string().as_bytes());
    hasher.update(b":");
    hasher.update(user_id.as_bytes());
    let hash = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash.as_bytes()[..8]);
    let bucket = u64::from_le_bytes(first) % u64::from(PERCENT_BASIS_POINTS_MAX);
    // The remainder is below 10 000, so it fits.
    u16::try_from(bucket).unwrap_or(0)
}

impl GrayRule {
    /// True when the rule has nothing to match with.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.percent_bp.is_none()
            && self.users.is_empty()
            && self.channels.is_empty()
            && self.regions.is_empty()
            && self.segments.is_empty()
    }

    /// Sorts and deduplicates the lists.
    pub(crate) fn normalize(&mut self) {
        for list in [
            &mut self.users,
            &mut self.channels,
            &mut self.regions,
            &mut self.segments,
        ] {
            list.sort();
            list.dedup();
        }
    }

    /// True when a reader with `context` gets release `release_id` under this rule.
    #[must_use]
    pub fn matches(&self, release_id: u64, context: &ReadContext) -> bool {
        let contains = |list: &[String], value: &str| {
            list.binary_search_by(|item| item.as_str().cmp(value))
                .is_ok()
        };
        if let Some(user) = &context.user_id
            && contains(&self.users, user)
        {
            return true;
        }
        if context
            .channel
            .as_deref()
            .is_some_and(|channel| contains(&self.channels, channel))
        {
            return true;
        }
        if context
            .region
            .as_deref()
            .is_some_and(|region| contains(&self.regions, region))
        {
            return true;
        }
        if context
            .segments
            .iter()
            .any(|segment| contains(&self.segments, segment))
        {
            return true;
        }
        match (self.percent_bp, &context.user_id) {
            (Some(percent_bp), Some(user)) => gray_bucket(release_id, user) < percent_bp,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str) -> ReadContext {
        ReadContext {
            user_id: Some(id.into()),
            ..ReadContext::default()
        }
    }

    #[test]
    fn the_bucket_is_a_fixed_function_of_release_and_user() {
        // Pinned values: changing the hash would move users between releases.
        let a = gray_bucket(1, "alice");
        assert_eq!(a, gray_bucket(1, "alice"));
        assert!(a < 10_000);
        let expected = {
            let hash = blake3::hash(b"1:alice");
            let mut first = [0u8; 8];
            first.copy_from_slice(&hash.as_bytes()[..8]);
            u16::try_from(u64::from_le_bytes(first) % 10_000).expect("fits")
        };
        assert_eq!(a, expected);
    }

    #[test]
    fn any_rule_matches() {
        let mut rule = GrayRule {
            percent_bp: None,
            users: vec!["u2".into(), "u1".into(), "u1".into()],
            channels: vec!["app".into()],
            regions: vec!["eu".into()],
            segments: vec!["vip".into()],
        };
        rule.normalize();
        assert_eq!(rule.users, vec!["u1".to_string(), "u2".to_string()]);
        assert!(rule.matches(7, &user("u1")));
        assert!(!rule.matches(7, &user("u3")));
        let channel = ReadContext {
            channel: Some("app".into()),
            ..ReadContext::default()
        };
        assert!(rule.matches(7, &channel));
        let region = ReadContext {
            region: Some("eu".into()),
            ..ReadContext::default()
        };
        assert!(rule.matches(7, &region));
        let segment = ReadContext {
            segments: vec!["x".into(), "vip".into()],
            ..ReadContext::default()
        };
        assert!(rule.matches(7, &segment));
        assert!(!rule.matches(7, &ReadContext::default()));
    }

    #[test]
    fn percent_needs_a_user_and_full_percent_takes_everyone() {
        let rule = GrayRule {
            percent_bp: Some(10_000),
            ..GrayRule::default()
        };
        assert!(rule.matches(3, &user("anyone")));
        assert!(!rule.matches(3, &ReadContext::default()));
    }
}
