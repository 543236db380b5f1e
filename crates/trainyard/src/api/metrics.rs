//! Training metrics in the CloudWatch shape (`ListMetrics`, `GetMetricStatistics`,
//! `GetMetricData`).
//!
//! SageMaker publishes every value a job's `MetricDefinitions` extract from its logs to
//! CloudWatch, namespace `/aws/sagemaker/TrainingJobs`, dimension `TrainingJobName`; SDK v2's
//! `TrainingJobAnalytics` reads them back with `GetMetricStatistics`. trainyard answers those
//! calls from the job's stored time series (`JobStore::metric_series`, written every few
//! seconds while the job runs and when it ends, at most `runner::logs::MAX_SERIES_POINTS`
//! values per metric). botocore speaks
//! CloudWatch's JSON protocol to it (`X-Amz-Target: GraniteServiceVersion20100801.<op>`,
//! timestamps as epoch seconds), which the API's dispatch already serves. Datapoints are
//! grouped in periods of `Period` seconds counted from `StartTime`; only the statistics
//! `SampleCount`, `Average`, `Sum`, `Minimum` and `Maximum` are computed.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{ApiError, AppState};
use crate::authz::control::training_job_dimension;
use crate::db::MetricValue;

/// The namespace SageMaker publishes training metrics in.
pub const NAMESPACE: &str = "/aws/sagemaker/TrainingJobs";
const DIMENSION: &str = "TrainingJobName";
const STATISTICS: [&str; 5] = ["SampleCount", "Average", "Sum", "Minimum", "Maximum"];

/// `ListMetrics`: one metric per (visible job, metric name), filtered by `Namespace`,
/// `MetricName` and `Dimensions` as CloudWatch filters them. Not paginated.
pub fn list_metrics(
    st: &AppState,
    input: &Value,
    visible: &dyn Fn(&str) -> bool,
) -> Result<Value, ApiError> {
    let text = |key: &str| input.get(key).and_then(Value::as_str);
    if text("Namespace").is_some_and(|n| n != NAMESPACE) {
        return Ok(json!({ "Metrics": [] }));
    }
    let mut wanted_job = None;
    for filter in input
        .get("Dimensions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match filter.get("Name").and_then(Value::as_str) {
            Some(DIMENSION) => wanted_job = filter.get("Value").and_then(Value::as_str),
            _ => return Ok(json!({ "Metrics": [] })),
        }
    }
    let names: Vec<String> = match wanted_job {
        Some(job) => vec![job.to_owned()],
        None => st
            .store
            .summaries()
            .map_err(ApiError::internal)?
            .into_iter()
            .map(|s| s.name)
            .collect(),
    };
    let mut metrics = Vec::new();
    for name in names.iter().filter(|name| visible(name)) {
        let Some(job) = st.store.get(name).map_err(ApiError::internal)? else {
            continue;
        };
        for metric in &job.metrics {
            if text("MetricName").is_some_and(|m| m != metric.name) {
                continue;
            }
            metrics.push(json!({
                "Namespace": NAMESPACE,
                "MetricName": metric.name,
                "Dimensions": [{ "Name": DIMENSION, "Value": job.name }],
            }));
        }
    }
    Ok(json!({ "Metrics": metrics }))
}

/// The values of one metric of one job, if the metric names this namespace and dimension.
fn series_of(
    st: &AppState,
    namespace: Option<&str>,
    metric: &str,
    dimensions: Option<&Value>,
) -> Result<Vec<MetricValue>, ApiError> {
    let only_job_dimension = dimensions
        .and_then(Value::as_array)
        .is_some_and(|d| d.len() == 1);
    let job = training_job_dimension(dimensions);
    if namespace != Some(NAMESPACE) || !only_job_dimension || job.is_empty() {
        return Ok(Vec::new());
    }
    let mut points = st.store.metric_series(job).map_err(ApiError::internal)?;
    points.retain(|p| p.name == metric);
    Ok(points)
}

/// Epoch seconds of a timestamp member (botocore's JSON protocol sends numbers).
fn time(input: &Value, key: &str) -> Result<f64, ApiError> {
    match input.get(key) {
        Some(v) => v
            .as_f64()
            .ok_or_else(|| ApiError::validation(format!("{key} must be a timestamp"))),
        None => Err(ApiError::validation(format!("{key} is required"))),
    }
}

fn period(value: Option<&Value>) -> Result<f64, ApiError> {
    match value.and_then(Value::as_u64) {
        Some(p) if p >= 1 => Ok(p as f64),
        _ => Err(ApiError::validation(
            "Period must be a positive number of seconds",
        )),
    }
}

/// One period's aggregate.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Bucket {
    start: f64,
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
}

impl Bucket {
    fn statistic(&self, name: &str) -> Option<f64> {
        Some(match name {
            "SampleCount" => self.count as f64,
            "Average" => self.sum / self.count as f64,
            "Sum" => self.sum,
            "Minimum" => self.min,
            "Maximum" => self.max,
            _ => return None,
        })
    }
}

/// Groups the values in `[start, end)` into periods of `period` seconds from `start`.
fn aggregate(points: &[MetricValue], start: f64, end: f64, period: f64) -> Vec<Bucket> {
    let mut buckets: BTreeMap<u64, Bucket> = BTreeMap::new();
    for p in points
        .iter()
        .filter(|p| p.timestamp >= start && p.timestamp < end)
    {
        let index = ((p.timestamp - start) / period).floor() as u64;
        buckets
            .entry(index)
            .and_modify(|b| {
                b.count += 1;
                b.sum += p.value;
                b.min = b.min.min(p.value);
                b.max = b.max.max(p.value);
            })
            .or_insert(Bucket {
                start: start + index as f64 * period,
                count: 1,
                sum: p.value,
                min: p.value,
                max: p.value,
            });
    }
    buckets.into_values().collect()
}

fn check_statistic(name: &str) -> Result<(), ApiError> {
    if STATISTICS.contains(&name) {
        Ok(())
    } else {
        Err(ApiError::validation(format!(
            "statistic {name:?} is not supported (one of {})",
            STATISTICS.join(", ")
        )))
    }
}

/// `GetMetricStatistics`.
pub fn get_metric_statistics(st: &AppState, input: &Value) -> Result<Value, ApiError> {
    let metric = input
        .get("MetricName")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::validation("MetricName is required"))?;
    let (start, end) = (time(input, "StartTime")?, time(input, "EndTime")?);
    let period = period(input.get("Period"))?;
    if input.get("ExtendedStatistics").is_some() {
        return Err(ApiError::validation("ExtendedStatistics are not supported"));
    }
    let statistics: Vec<&str> = input
        .get("Statistics")
        .and_then(Value::as_array)
        .map(|s| s.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if statistics.is_empty() {
        return Err(ApiError::validation("Statistics is required"));
    }
    for s in &statistics {
        check_statistic(s)?;
    }
    let points = series_of(
        st,
        input.get("Namespace").and_then(Value::as_str),
        metric,
        input.get("Dimensions"),
    )?;
    let datapoints: Vec<Value> = aggregate(&points, start, end, period)
        .iter()
        .map(|b| {
            let mut point = serde_json::Map::new();
            point.insert("Timestamp".into(), json!(b.start));
            for s in &statistics {
                point.insert((*s).into(), json!(b.statistic(s)));
            }
            point.insert("Unit".into(), json!("None"));
            Value::Object(point)
        })
        .collect();
    Ok(json!({ "Label": metric, "Datapoints": datapoints }))
}

/// `GetMetricData` for `MetricStat` queries (math expressions are refused). Not paginated.
pub fn get_metric_data(st: &AppState, input: &Value) -> Result<Value, ApiError> {
    let (start, end) = (time(input, "StartTime")?, time(input, "EndTime")?);
    let ascending = input.get("ScanBy").and_then(Value::as_str) == Some("TimestampAscending");
    let queries = input
        .get("MetricDataQueries")
        .and_then(Value::as_array)
        .filter(|q| !q.is_empty())
        .ok_or_else(|| ApiError::validation("MetricDataQueries is required"))?;
    let mut results = Vec::new();
    for query in queries {
        let id = query.get("Id").and_then(Value::as_str).unwrap_or("");
        let Some(stat) = query.get("MetricStat") else {
            return Err(ApiError::validation(format!(
                "query {id:?}: only MetricStat queries are supported"
            )));
        };
        let name = stat.get("Stat").and_then(Value::as_str).unwrap_or("");
        check_statistic(name)?;
        let metric = stat.get("Metric").unwrap_or(&Value::Null);
        let metric_name = metric
            .get("MetricName")
            .and_then(Value::as_str)
            .unwrap_or("");
        let period = period(stat.get("Period"))?;
        let points = series_of(
            st,
            metric.get("Namespace").and_then(Value::as_str),
            metric_name,
            metric.get("Dimensions"),
        )?;
        if query.get("ReturnData").and_then(Value::as_bool) == Some(false) {
            continue;
        }
        let mut buckets = aggregate(&points, start, end, period);
        if !ascending {
            buckets.reverse();
        }
        let label = query
            .get("Label")
            .and_then(Value::as_str)
            .unwrap_or(metric_name);
        results.push(json!({
            "Id": id,
            "Label": label,
            "Timestamps": buckets.iter().map(|b| b.start).collect::<Vec<_>>(),
            "Values": buckets.iter().filter_map(|b| b.statistic(name)).collect::<Vec<_>>(),
            "StatusCode": "Complete",
        }));
    }
    Ok(json!({ "MetricDataResults": results, "Messages": [] }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(timestamp: f64, value: f64) -> MetricValue {
        MetricValue {
            name: "loss".into(),
            value,
            timestamp,
        }
    }

    #[test]
    fn values_are_grouped_in_periods_from_the_start() {
        let points = [
            point(99.0, 9.0),
            point(100.0, 1.0),
            point(159.0, 3.0),
            point(160.0, 5.0),
            point(299.0, 7.0),
            point(300.0, 8.0),
        ];
        let buckets = aggregate(&points, 100.0, 300.0, 60.0);
        let summary: Vec<(f64, u64, f64, f64, f64)> = buckets
            .iter()
            .map(|b| (b.start, b.count, b.sum, b.min, b.max))
            .collect();
        assert_eq!(
            summary,
            [
                (100.0, 2, 4.0, 1.0, 3.0),
                (160.0, 1, 5.0, 5.0, 5.0),
                (280.0, 1, 7.0, 7.0, 7.0)
            ]
        );
        assert_eq!(buckets[0].statistic("Average"), Some(2.0));
        assert_eq!(buckets[0].statistic("SampleCount"), Some(2.0));
        assert_eq!(buckets[0].statistic("p90"), None);
    }

    #[test]
    fn the_training_job_dimension_is_found_by_name() {
        let dims =
            json!([{"Name": "Host", "Value": "algo-1"}, {"Name": "TrainingJobName", "Value": "j"}]);
        assert_eq!(training_job_dimension(Some(&dims)), "j");
        assert_eq!(training_job_dimension(None), "");
    }
}
