//! Routing rules for S3 uploads: the first rule whose bucket matches and whose prefix starts
//! the key names the pipeline and the output prefix. Validated without IO.

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub bucket: String,
    #[serde(default)]
    pub prefix: String,
    pub pipeline: String,
    /// `s3://bucket/prefix` the outputs go under.
    pub output_prefix: String,
}

#[derive(Debug, Clone)]
pub struct Routes {
    routes: Vec<Route>,
    pipelines: Vec<String>,
    default_output: String,
}

impl Routes {
    /// `pipelines` are the names the daemon can run; `default_output` is the prefix for job
    /// messages that name none.
    pub fn new<S: AsRef<str>>(
        routes: Vec<Route>,
        pipelines: impl IntoIterator<Item = S>,
        default_output: String,
    ) -> Result<Self, String> {
        let pipelines: Vec<String> = pipelines.into_iter().map(|p| p.as_ref().to_owned()).collect();
        let s3 = |p: &str| p.starts_with("s3://") && p.len() > 5 && !p[5..].starts_with('/');
        if !s3(&default_output) {
            return Err(format!("default output {default_output:?} is not an s3:// URI"));
        }
        for (i, r) in routes.iter().enumerate() {
            if r.bucket.is_empty() {
                return Err(format!("route {i}: empty bucket"));
            }
            if !pipelines.contains(&r.pipeline) {
                return Err(format!("route {i}: unknown pipeline {:?}", r.pipeline));
            }
            if !s3(&r.output_prefix) {
                return Err(format!(
                    "route {i}: output_prefix {:?} is not an s3:// URI",
                    r.output_prefix
                ));
            }
        }
        let routes = routes
            .into_iter()
            .map(|r| Route {
                output_prefix: r.output_prefix.trim_end_matches('/').to_owned(),
                ..r
            })
            .collect();
        Ok(Self {
            routes,
            pipelines,
            default_output: default_output.trim_end_matches('/').to_owned(),
        })
    }

    pub fn route(&self, bucket: &str, key: &str) -> Option<&Route> {
        self.routes
            .iter()
            .find(|r| r.bucket == bucket && key.starts_with(&r.prefix))
    }

    pub fn knows_pipeline(&self, name: &str) -> bool {
        self.pipelines.iter().any(|p| p == name)
    }

    pub fn default_output(&self) -> &str {
        &self.default_output
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_bad_rules() {
        let r = |pipeline: &str, out: &str| Route {
            bucket: "b".into(),
            prefix: String::new(),
            pipeline: pipeline.into(),
            output_prefix: out.into(),
        };
        assert!(Routes::new(vec![r("invoice", "s3://o/x")], ["invoice"], "s3://o/d".into()).is_ok());
        assert!(Routes::new(vec![r("nope", "s3://o/x")], ["invoice"], "s3://o/d".into()).is_err());
        assert!(Routes::new(vec![r("invoice", "/tmp/x")], ["invoice"], "s3://o/d".into()).is_err());
        assert!(Routes::new(vec![], ["invoice"], "s3:///d".into()).is_err());
    }
}
