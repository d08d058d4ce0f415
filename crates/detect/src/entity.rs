//! The kinds of sensitive value the scanner reports, and their names.
//!
//! Names follow Microsoft Presidio's entity names where Presidio has the entity, so that policy
//! files and evaluation data can be shared with it; secrets, which Presidio does not detect, get
//! names in the same style.

use std::fmt;
use std::str::FromStr;

use crate::DetectError;

/// A kind of sensitive value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Entity {
    EmailAddress,
    PhoneNumber,
    CreditCard,
    IbanCode,
    UsSsn,
    IpAddress,
    MacAddress,
    AwsAccessKeyId,
    AwsSecretAccessKey,
    GithubToken,
    GitlabToken,
    SlackToken,
    SlackWebhookUrl,
    StripeKey,
    Jwt,
    PrivateKey,
    /// A value assigned to a `password`, `secret`, `api_key`, … key that looks random enough to
    /// be a real credential.
    GenericSecret,
}

impl Entity {
    /// Every entity, in declaration order.
    pub const ALL: [Entity; 17] = [
        Entity::EmailAddress,
        Entity::PhoneNumber,
        Entity::CreditCard,
        Entity::IbanCode,
        Entity::UsSsn,
        Entity::IpAddress,
        Entity::MacAddress,
        Entity::AwsAccessKeyId,
        Entity::AwsSecretAccessKey,
        Entity::GithubToken,
        Entity::GitlabToken,
        Entity::SlackToken,
        Entity::SlackWebhookUrl,
        Entity::StripeKey,
        Entity::Jwt,
        Entity::PrivateKey,
        Entity::GenericSecret,
    ];

    /// The entity's name: Presidio's where Presidio has one.
    pub const fn as_str(self) -> &'static str {
        match self {
            Entity::EmailAddress => "EMAIL_ADDRESS",
            Entity::PhoneNumber => "PHONE_NUMBER",
            Entity::CreditCard => "CREDIT_CARD",
            Entity::IbanCode => "IBAN_CODE",
            Entity::UsSsn => "US_SSN",
            Entity::IpAddress => "IP_ADDRESS",
            Entity::MacAddress => "MAC_ADDRESS",
            Entity::AwsAccessKeyId => "AWS_ACCESS_KEY_ID",
            Entity::AwsSecretAccessKey => "AWS_SECRET_ACCESS_KEY",
            Entity::GithubToken => "GITHUB_TOKEN",
            Entity::GitlabToken => "GITLAB_TOKEN",
            Entity::SlackToken => "SLACK_TOKEN",
            Entity::SlackWebhookUrl => "SLACK_WEBHOOK_URL",
            Entity::StripeKey => "STRIPE_KEY",
            Entity::Jwt => "JWT",
            Entity::PrivateKey => "PRIVATE_KEY",
            Entity::GenericSecret => "GENERIC_SECRET",
        }
    }

    /// The entity with this name; ASCII case does not matter, so policy authors may write
    /// `credit_card`.
    pub fn parse(name: &str) -> Result<Entity, DetectError> {
        Entity::ALL
            .into_iter()
            .find(|e| e.as_str().eq_ignore_ascii_case(name))
            .ok_or_else(|| DetectError::UnknownEntity(name.to_owned()))
    }

    /// Whether this is a credential rather than personal data.
    pub const fn is_secret(self) -> bool {
        !matches!(
            self,
            Entity::EmailAddress
                | Entity::PhoneNumber
                | Entity::CreditCard
                | Entity::IbanCode
                | Entity::UsSsn
                | Entity::IpAddress
                | Entity::MacAddress
        )
    }

    /// Tie-break rank when two findings overlap with equal scores: a specific secret rule knows
    /// more than a personal-data pattern, which knows more than the generic `key = value` rule.
    pub(crate) const fn rank(self) -> u8 {
        match self {
            Entity::GenericSecret => 2,
            e if e.is_secret() => 0,
            _ => 1,
        }
    }

    /// The bit of this entity in an [`EntitySet`].
    pub(crate) const fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

impl fmt::Display for Entity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Entity {
    type Err = DetectError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Entity::parse(s)
    }
}

/// A set of entities as a bit mask: cheap to copy and to test in the scanner's hot paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct EntitySet(u32);

impl EntitySet {
    pub(crate) fn of(entities: &[Entity]) -> EntitySet {
        EntitySet(entities.iter().fold(0, |m, e| m | e.bit()))
    }

    pub(crate) const fn contains(self, e: Entity) -> bool {
        self.0 & e.bit() != 0
    }

    pub(crate) const fn any_secret(self) -> bool {
        let pii = Entity::EmailAddress.bit()
            | Entity::PhoneNumber.bit()
            | Entity::CreditCard.bit()
            | Entity::IbanCode.bit()
            | Entity::UsSsn.bit()
            | Entity::IpAddress.bit()
            | Entity::MacAddress.bit();
        self.0 & !pii != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for e in Entity::ALL {
            assert_eq!(Entity::parse(e.as_str()), Ok(e));
            assert_eq!(e.as_str().parse::<Entity>(), Ok(e));
            assert_eq!(Entity::parse(&e.as_str().to_lowercase()), Ok(e));
        }
        assert_eq!(Entity::parse("CREDIT_CARD"), Ok(Entity::CreditCard));
        assert!(matches!(
            Entity::parse("NOPE"),
            Err(DetectError::UnknownEntity(_))
        ));
    }

    #[test]
    fn bits_are_distinct() {
        let all = EntitySet::of(&Entity::ALL);
        for e in Entity::ALL {
            assert!(all.contains(e));
        }
        assert_eq!(all.0.count_ones() as usize, Entity::ALL.len());
        assert!(!EntitySet::of(&[Entity::CreditCard]).any_secret());
        assert!(EntitySet::of(&[Entity::Jwt]).any_secret());
    }
}
