//! Limits that keep a hostile or accidental input from exhausting memory or time.

use serde::{Deserialize, Serialize};

/// Bounds on what a single input may cost. Checked before allocation wherever the format allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest input file, in bytes.
    pub max_bytes: u64,
    /// Largest decoded page, in pixels (width × height).
    pub max_pixels: u64,
    /// Largest width or height of a page, in pixels.
    pub max_dimension: u32,
    /// Most pages taken from one document (PDF, multi-page TIFF).
    pub max_pages: u32,
    /// Longest time the daemon gives one page (decoding, rendering, encoding, generating), in
    /// seconds: a job's time limit is this times its pages, capped by the daemon's
    /// `job_timeout_s`. Past it the work is cancelled at its next decoding step.
    pub max_seconds_per_page: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bytes: 64 * 1024 * 1024,
            max_pixels: 64_000_000,
            max_dimension: 20_000,
            max_pages: 200,
            max_seconds_per_page: 300,
        }
    }
}

impl Limits {
    /// Bytes a decoder may allocate for one page: RGBA at 16 bits per channel, plus slack.
    pub fn max_alloc(&self) -> u64 {
        self.max_pixels.saturating_mul(8).saturating_add(16 * 1024 * 1024)
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.max_bytes == 0
            || self.max_pixels == 0
            || self.max_dimension == 0
            || self.max_pages == 0
            || self.max_seconds_per_page == 0
        {
            return Err("limits must all be greater than zero".into());
        }
        Ok(())
    }
}
