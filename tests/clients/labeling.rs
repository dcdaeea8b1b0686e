//! Contract 003 (the labeling platform): its login, the part served today.

use serde_json::Value;

use super::{Call, contract_client};

contract_client!(
    /// A caller of contract 003.
    Labeling
);

impl Labeling<'_> {
    /// `POST /auth/login` (`username`, `password`): a token and the one role it shows.
    pub fn login(&self, body: &Value) -> Call {
        self.0.post("/auth/login", body)
    }
}
