//! Roles as API-MAP.md §2 defines them.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::DomainError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Doctor,
    Technician,
    Annotator,
    StudentDev,
    Standard,
    Demo,
    Customer,
    Labeler,
    Universal,
}

impl Role {
    pub const ALL: [Role; 10] = [
        Role::Admin,
        Role::Doctor,
        Role::Technician,
        Role::Annotator,
        Role::StudentDev,
        Role::Standard,
        Role::Demo,
        Role::Customer,
        Role::Labeler,
        Role::Universal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Doctor => "doctor",
            Role::Technician => "technician",
            Role::Annotator => "annotator",
            Role::StudentDev => "student_dev",
            Role::Standard => "standard",
            Role::Demo => "demo",
            Role::Customer => "customer",
            Role::Labeler => "labeler",
            Role::Universal => "universal",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = DomainError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL.into_iter().find(|r| r.as_str() == s).ok_or_else(|| {
            let allowed: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
            DomainError::invalid("role", format!("unknown role '{s}'; allowed: {}", allowed.join(", ")))
        })
    }
}

/// The set of roles a user holds. Never empty once a user exists.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Roles(BTreeSet<Role>);

impl Roles {
    pub fn new(roles: impl IntoIterator<Item = Role>) -> Self {
        Self(roles.into_iter().collect())
    }

    pub fn contains(&self, role: Role) -> bool {
        self.0.contains(&role)
    }

    pub fn is_admin(&self) -> bool {
        self.contains(Role::Admin)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = Role> + '_ {
        self.0.iter().copied()
    }

    /// The one role contract 002 shows (`admin|doctor|technician`): the first role held
    /// in the order of [`Role::ALL`], which ranks admin first, then 002's own roles.
    pub fn primary(&self) -> Role {
        self.0.iter().copied().next().unwrap_or(Role::Standard)
    }

    /// Contract 003's single login role: admin, else universal when the user may act as
    /// both customer and labeler, else labeler, else customer.
    pub fn labeling_role(&self) -> &'static str {
        let customer = self.contains(Role::Customer);
        let labeler = self.contains(Role::Labeler);
        if self.is_admin() {
            "admin"
        } else if self.contains(Role::Universal) || (customer && labeler) {
            "universal"
        } else if labeler {
            "labeler"
        } else {
            "customer"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_role_round_trips_through_its_name() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
    }

    #[test]
    fn unknown_role_lists_the_allowed_ones() {
        let err = "superuser".parse::<Role>().unwrap_err();
        assert!(err.to_string().contains("student_dev"), "{err}");
    }

    #[test]
    fn labeling_role_follows_the_api_map() {
        assert_eq!(Roles::new([Role::Admin, Role::Labeler]).labeling_role(), "admin");
        assert_eq!(Roles::new([Role::Customer, Role::Labeler]).labeling_role(), "universal");
        assert_eq!(Roles::new([Role::Universal]).labeling_role(), "universal");
        assert_eq!(Roles::new([Role::Labeler]).labeling_role(), "labeler");
        assert_eq!(Roles::new([Role::Doctor]).labeling_role(), "customer");
    }

    #[test]
    fn primary_role_prefers_admin_then_doctor() {
        assert_eq!(Roles::new([Role::Doctor, Role::Admin]).primary(), Role::Admin);
        assert_eq!(Roles::new([Role::Labeler, Role::Doctor]).primary(), Role::Doctor);
    }
}
