//! Status page (work in progress).

mod date;
mod error;
mod health;
mod model;
mod site;
mod summary;
mod text;

pub use date::{TIME_MAX, TIME_MIN, human_time, rfc3339};
pub use error::{Counted, Field, ImportError, ImportErrorKind, ValidationError};
pub use health::{
    Breach, ComponentView, Health, HealthPolicy, HealthWatch, Signal, breaches, derive_components,
    duration,
};
pub use model::*;
pub use site::{PUBLIC_URL_BYTES_MAX, SITE_NAME_BYTES_MAX, Site};
pub use summary::{
    MAINTENANCE_SHOWN_MAX, OPEN_SHOWN_MAX, RECENT_DAYS, RECENT_SHOWN_MAX, Summary, banner,
    summarize,
};
pub use text::{URL_BYTES_MAX, escape, push_escaped, text_to_html};
