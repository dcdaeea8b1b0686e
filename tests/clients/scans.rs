//! Contract 001 (ToothFairy4M): the browser's login page and cookie session, and the
//! processing service's health. Cookies and the CSRF header go through `Call::header`.

use serde::Serialize;

use super::{Call, contract_client};

contract_client!(
    /// A caller of contract 001.
    Scans
);

impl Scans<'_> {
    /// `GET /login/`: the page that sets the `csrftoken` cookie.
    pub fn login_page(&self) -> Call {
        self.0.get("/login/")
    }

    /// `POST /login/` as the page's form (`username`, `password`, `csrfmiddlewaretoken`).
    pub fn login(&self, form: &(impl Serialize + ?Sized)) -> Call {
        self.0.post_form("/login/", form)
    }

    /// `POST /logout/` (CSRF token for a cookie session, none for a bearer token).
    pub fn logout(&self) -> Call {
        self.0.post_empty("/logout/")
    }

    /// `GET /api/processing/health/`.
    pub fn processing_health(&self) -> Call {
        self.0.get("/api/processing/health/")
    }
}
