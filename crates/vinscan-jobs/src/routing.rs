//! Routing rules for S3 uploads: the first rule whose bucket matches and whose prefix starts
//! the key names the pipeline and the output prefix. Validated without IO.

use serde::{Deserialize, Serialize};
use vinscan_storage::S3Uri;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub bucket: String,
    #[serde(default)]
    pub prefix: String,
    pub pipeline: String,
    /// Where the outputs go.
    pub output_prefix: S3Uri,
}

#[derive(Debug, Clone)]
pub struct Routes {
    routes: Vec<Route>,
    pipelines: Vec<String>,
    default_output: S3Uri,
}

impl Routes {
    /// `pipelines` are the names the daemon can run; `default_output` is the prefix for job
    /// messages that name none.
    pub fn new<S: AsRef<str>>(
        routes: Vec<Route>,
        pipelines: impl IntoIterator<Item = S>,
        default_output: S3Uri,
    ) -> Result<Self, String> {
        let pipelines: Vec<String> = pipelines.into_iter().map(|p| p.as_ref().to_owned()).collect();
        for (i, r) in routes.iter().enumerate() {
            if r.bucket.is_empty() {
                return Err(format!("route {i}: empty bucket"));
            }
            if !pipelines.contains(&r.pipeline) {
                return Err(format!("route {i}: unknown pipeline {:?}", r.pipeline));
            }
        }
        Ok(Self {
            routes,
            pipelines,
            default_output,
        })
    }

    pub fn route(&self, bucket: &str, key: &str) -> Option<&Route> {
        self.routes
            .iter()
            .find(|r| r.bucket == bucket && key.starts_with(&r.prefix))
    }

    /// Whether the deployment names `bucket`: a route's bucket, a route's output bucket or the
    /// default output's.
    pub fn configures_bucket(&self, bucket: &str) -> bool {
        self.default_output.bucket() == bucket
            || self
                .routes
                .iter()
                .any(|r| r.bucket == bucket || r.output_prefix.bucket() == bucket)
    }

    pub fn knows_pipeline(&self, name: &str) -> bool {
        self.pipelines.iter().any(|p| p == name)
    }

    pub fn default_output(&self) -> &S3Uri {
        &self.default_output
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_bad_rules() {
        let uri = |s: &str| s.parse::<S3Uri>().expect("uri");
        let r = |pipeline: &str, bucket: &str| Route {
            bucket: bucket.into(),
            prefix: String::new(),
            pipeline: pipeline.into(),
            output_prefix: uri("s3://out/x"),
        };
        let routes = |r: Route| Routes::new(vec![r], ["invoice"], uri("s3://out/d"));
        assert!(routes(r("invoice", "b")).is_ok());
        assert!(routes(r("nope", "b")).is_err());
        assert!(routes(r("invoice", "")).is_err());
        // invalid output prefixes cannot even be written down: S3Uri refuses them
        let toml: Result<Route, _> =
            toml::from_str("bucket = \"b\"\npipeline = \"invoice\"\noutput_prefix = \"/tmp/x\"");
        assert!(toml.is_err());
    }
}
