//! Status page (work in progress).

mod atom;
mod date;
mod error;
mod health;
mod html;
mod import;
mod json;
mod model;
mod site;
mod summary;
mod text;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod markup_check;

pub use atom::{FEED_ENTRIES_MAX, render_feed};
pub use date::{TIME_MAX, TIME_MIN, human_time, rfc3339};
pub use error::{Counted, Field, ImportError, ImportErrorKind, ValidationError};
pub use health::{
    Breach, ComponentView, Health, HealthPolicy, HealthWatch, Signal, breaches, derive_components,
    duration,
};
pub use html::{
    FEED_PATH, HISTORY_PATH, HISTORY_PER_PAGE_MAX, HISTORY_PER_PAGE_MIN, HistoryInput, JSON_PATH,
    PageInput, Pagination, STATUS_PATH, history_page_path, incident_path, render_history_page,
    render_incident_page, render_status_page,
};
pub use import::{
    Fingerprint, IMPORT_BYTES_MAX, IMPORT_INCIDENTS_MAX, Import, ImportedIncident, ImportedPost,
    fingerprint, import_log,
};
pub use json::{ComponentDocument, IncidentDocument, PhaseName, PostDocument, StatusDocument};
pub use model::*;
pub use site::{PUBLIC_URL_BYTES_MAX, SITE_NAME_BYTES_MAX, Site};
pub use summary::{
    MAINTENANCE_SHOWN_MAX, OPEN_SHOWN_MAX, RECENT_DAYS, RECENT_SHOWN_MAX, Summary, banner,
    summarize,
};
pub use text::{Escaped, URL_BYTES_MAX, escape, push_escaped, text_to_html};
