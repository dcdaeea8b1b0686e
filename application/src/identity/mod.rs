//! Identity: accounts, sessions and logins for every contract, the access model that
//! judges each request, audit entries, and the password-reset mail.

pub mod access;
pub mod accounts;
pub mod audit;
mod error;
mod reset_mail;

pub use access::{AccessModel, Caller};
pub use error::AccountError;
pub use reset_mail::ResetMailSaga;
