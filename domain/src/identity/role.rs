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

/// Contract 002's documented roles, highest first.
pub const MYO_ROLES: [Role; 3] = [Role::Admin, Role::Doctor, Role::Technician];

fn myo_rank(role: Role) -> usize {
    MYO_ROLES.iter().position(|r| *r == role).unwrap_or(MYO_ROLES.len())
}

impl Role {
    /// The nearest of contract 002's roles: those who make or label images (001's
    /// annotators and student developers, 003's labelers) are technicians; those who
    /// view, order or review results (001's standard and demo users, 003's customers
    /// and universal users) are doctors, 002's role for anyone who registers. Both give
    /// the same rights in 002 (API-MAP §2): the mapping only decides what a 002
    /// client shows.
    pub fn nearest_myo(self) -> Role {
        match self {
            Role::Admin => Role::Admin,
            Role::Technician | Role::Annotator | Role::StudentDev | Role::Labeler => Role::Technician,
            Role::Doctor | Role::Standard | Role::Demo | Role::Customer | Role::Universal => Role::Doctor,
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

    /// The role contract 002 shows (`admin|doctor|technician`, its documented set) for
    /// a user who may hold roles of other contracts: the highest of 002's own roles the
    /// user holds, else the highest of the nearest 002 role of each role held
    /// ([`Role::nearest_myo`]). The full set is listed beside it (`roles`).
    pub fn myo_role(&self) -> Role {
        let own = self.iter().filter(|r| MYO_ROLES.contains(r)).min_by_key(|r| myo_rank(*r));
        own.unwrap_or_else(|| self.iter().map(Role::nearest_myo).min_by_key(|r| myo_rank(*r)).unwrap_or(Role::Doctor))
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
    fn every_role_shows_as_one_of_002s_roles() {
        for role in Role::ALL {
            assert!(MYO_ROLES.contains(&Roles::new([role]).myo_role()), "{role} shows outside 002's set");
        }
        assert_eq!(Roles::new([Role::Labeler]).myo_role(), Role::Technician);
        assert_eq!(Roles::new([Role::Annotator]).myo_role(), Role::Technician);
        assert_eq!(Roles::new([Role::StudentDev]).myo_role(), Role::Technician);
        assert_eq!(Roles::new([Role::Customer]).myo_role(), Role::Doctor);
        assert_eq!(Roles::new([Role::Universal]).myo_role(), Role::Doctor);
        assert_eq!(Roles::new([Role::Standard]).myo_role(), Role::Doctor);
        assert_eq!(Roles::new([Role::Demo]).myo_role(), Role::Doctor);
        assert_eq!(Roles::default().myo_role(), Role::Doctor);
    }

    #[test]
    fn a_002_role_held_wins_over_a_mapped_one() {
        assert_eq!(Roles::new([Role::Technician, Role::Customer]).myo_role(), Role::Technician);
        assert_eq!(Roles::new([Role::Labeler, Role::Customer]).myo_role(), Role::Doctor);
        assert_eq!(Roles::new([Role::Labeler, Role::Admin]).myo_role(), Role::Admin);
        assert_eq!(Roles::new([Role::Doctor, Role::Technician]).myo_role(), Role::Doctor);
    }

    #[test]
    fn primary_role_prefers_admin_then_doctor() {
        assert_eq!(Roles::new([Role::Doctor, Role::Admin]).primary(), Role::Admin);
        assert_eq!(Roles::new([Role::Labeler, Role::Doctor]).primary(), Role::Doctor);
    }
}
