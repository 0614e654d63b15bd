//! Whether the model thread can still serve: set by the thread when it ends unexpectedly, read
//! by every caller before it sends work, and by readiness probes.

use std::sync::Mutex;

use vinscan_core::{Error, ErrorKind, Result};

/// The model thread's health, shared between it and the callers.
#[derive(Debug, Default)]
pub(crate) struct Health {
    /// Why the thread can no longer serve; `None` while it can.
    gone: Mutex<Option<String>>,
}

impl Health {
    /// Records that the thread can no longer serve (the first reason is kept).
    pub(crate) fn fail(&self, why: &str) {
        let mut gone = self.gone.lock().unwrap_or_else(|p| p.into_inner());
        if gone.is_none() {
            *gone = Some(why.to_owned());
        }
    }

    /// `Ok` while the thread serves, else `Unavailable` with the reason.
    pub(crate) fn check(&self) -> Result<()> {
        let gone = self.gone.lock().unwrap_or_else(|p| p.into_inner());
        match gone.as_deref() {
            None => Ok(()),
            Some(why) => Err(Error::new(ErrorKind::Unavailable, why.to_owned())),
        }
    }

    /// A guard for the thread body: unless [`ThreadEnd::clean`] is called, dropping it (the
    /// body returned early or unwound) marks the thread gone.
    pub(crate) fn watch_thread(&self) -> ThreadEnd<'_> {
        ThreadEnd {
            health: self,
            clean: false,
        }
    }
}

/// See [`Health::watch_thread`].
pub(crate) struct ThreadEnd<'a> {
    health: &'a Health,
    clean: bool,
}

impl ThreadEnd<'_> {
    /// The thread ended because its work was over (the command channel closed).
    pub(crate) fn clean(mut self) {
        self.clean = true;
    }
}

impl Drop for ThreadEnd<'_> {
    fn drop(&mut self) {
        if !self.clean {
            self.health.fail("the model thread has stopped");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_that_unwinds_marks_the_engine_gone() {
        let health = Health::default();
        assert!(health.check().is_ok());
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _end = health.watch_thread();
            panic!("llama.cpp assertion");
        }));
        assert!(r.is_err());
        assert_eq!(health.check().map_err(|e| e.kind()), Err(ErrorKind::Unavailable));
    }

    #[test]
    fn a_clean_end_leaves_it_healthy_and_the_first_reason_is_kept() {
        let health = Health::default();
        health.watch_thread().clean();
        assert!(health.check().is_ok());
        health.fail("first");
        health.fail("second");
        assert_eq!(
            health.check().map_err(|e| e.message().to_owned()),
            Err("first".to_owned())
        );
    }
}
