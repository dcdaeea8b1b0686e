//! HTTP routes, one module per contract plus medledger's own operations endpoints.

pub mod inference;
pub mod logins;
pub mod medagg;
pub mod myo;
pub mod ops;
pub mod scans;
