//! The `CreateTrainingJob` request, with SageMaker's field names.
//!
//! These types are the wire shape (`aws sagemaker create-training-job --cli-input-json` takes
//! the same JSON), so field names are PascalCase exactly as in the service model and unknown
//! fields are refused: a typo such as `InputDataConfigs` must not be silently ignored. Enums are
//! typed, so a bad value fails at parse time with the accepted values listed. Limits that the
//! type system cannot express (lengths, patterns, cross-field rules) live in `validate.rs`.
//!
//! Every member of the service model's `CreateTrainingJobRequest` has a type here, including the
//! structures trainyard accepts but does not act on (debugger, profiler, experiments, ...): a
//! member of the wrong shape is refused at parse time rather than stored, because a stored one
//! is echoed by DescribeTrainingJob and would break every SDK that parses the response.
//! Instance types stay strings: the model's enum grows with each release and trainyard's
//! instance-type table decides which ones run.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The body of `CreateTrainingJob`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct CreateTrainingJobRequest {
    pub training_job_name: String,
    pub role_arn: String,
    pub output_data_config: OutputDataConfig,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub algorithm_specification: Option<AlgorithmSpecification>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_config: Option<ResourceConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopping_condition: Option<StoppingCondition>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hyper_parameters: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_data_config: Option<Vec<Channel>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint_config: Option<CheckpointConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<Tag>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vpc_config: Option<VpcConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_network_isolation: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_inter_container_traffic_encryption: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_managed_spot_training: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_strategy: Option<RetryStrategy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_chaining_config: Option<SessionChainingConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub debug_hook_config: Option<DebugHookConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub debug_rule_configurations: Option<Vec<RuleConfiguration>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tensor_board_output_config: Option<TensorBoardOutputConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profiler_config: Option<ProfilerConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profiler_rule_configurations: Option<Vec<RuleConfiguration>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub experiment_config: Option<ExperimentConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_debug_config: Option<RemoteDebugConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub infra_check_config: Option<InfraCheckConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serverless_job_config: Option<ServerlessJobConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mlflow_config: Option<MlflowConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_package_config: Option<ModelPackageConfig>,
}

/// How the training process is started and how its data is delivered by default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct AlgorithmSpecification {
    pub training_input_mode: InputMode,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub training_image: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub algorithm_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_entrypoint: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_arguments: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metric_definitions: Option<Vec<MetricDefinition>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_sage_maker_metrics_time_series: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub training_image_config: Option<TrainingImageConfig>,
}

/// A regex over log lines whose first capture group is a metric value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct MetricDefinition {
    pub name: String,
    pub regex: String,
}

/// `File`, `FastFile` or `Pipe`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum InputMode {
    File,
    FastFile,
    Pipe,
}

impl InputMode {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            InputMode::File => "File",
            InputMode::FastFile => "FastFile",
            InputMode::Pipe => "Pipe",
        }
    }
}

/// One named input channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Channel {
    pub channel_name: String,
    pub data_source: DataSource,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compression_type: Option<ChannelCompression>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record_wrapper_type: Option<RecordWrapper>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_mode: Option<InputMode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shuffle_config: Option<ShuffleConfig>,
}

/// Where a channel's data comes from: exactly one member must be set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct DataSource {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_data_source: Option<S3DataSource>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_system_data_source: Option<FileSystemDataSource>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dataset_source: Option<DatasetSource>,
}

/// Objects in S3-compatible storage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct S3DataSource {
    pub s3_data_type: S3DataType,
    pub s3_uri: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_data_distribution_type: Option<Distribution>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attribute_names: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_group_names: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_access_config: Option<ModelAccessConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hub_access_config: Option<HubAccessConfig>,
}

/// What `S3Uri` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum S3DataType {
    S3Prefix,
    ManifestFile,
    AugmentedManifestFile,
    Converse,
}

/// How a channel is spread over hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Distribution {
    #[default]
    FullyReplicated,
    ShardedByS3Key,
}

impl Distribution {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Distribution::FullyReplicated => "FullyReplicated",
            Distribution::ShardedByS3Key => "ShardedByS3Key",
        }
    }
}

/// EFS or FSx for Lustre; here, a directory configured for the file-system id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct FileSystemDataSource {
    pub file_system_id: String,
    pub file_system_access_mode: FileSystemAccessMode,
    pub file_system_type: FileSystemType,
    pub directory_path: String,
}

/// `ro` or `rw`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileSystemAccessMode {
    Rw,
    Ro,
}

/// `EFS` or `FSxLustre`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileSystemType {
    #[serde(rename = "EFS")]
    Efs,
    #[serde(rename = "FSxLustre")]
    FsxLustre,
}

/// Channel compression (`None` | `Gzip`, mixed case unlike the output's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChannelCompression {
    None,
    Gzip,
}

/// Record framing added in Pipe mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecordWrapper {
    None,
    #[serde(rename = "RecordIO")]
    RecordIo,
}

/// A deterministic shuffle of the object list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ShuffleConfig {
    pub seed: i64,
}

/// Where artifacts go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct OutputDataConfig {
    pub s3_output_path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compression_type: Option<OutputCompression>,
}

/// Output compression (`GZIP` | `NONE`, upper case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum OutputCompression {
    #[default]
    Gzip,
    None,
}

/// The compute of the job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ResourceConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_count: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume_size_in_g_b: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume_kms_key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_alive_period_in_seconds: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_groups: Option<Vec<InstanceGroup>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub training_plan_arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_placement_config: Option<InstancePlacementConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_preferences: Option<Vec<InstancePreference>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selected_instance_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selected_instance_count: Option<i64>,
}

/// Time limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct StoppingCondition {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_runtime_in_seconds: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_wait_time_in_seconds: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_pending_time_in_seconds: Option<i64>,
}

/// Checkpoint sync location.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct CheckpointConfig {
    pub s3_uri: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_path: Option<String>,
}

/// A key/value tag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

/// VPC placement (stored and echoed; no effect locally).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct VpcConfig {
    pub security_group_ids: Vec<String>,
    pub subnets: Vec<String>,
}

/// Retries on platform errors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct RetryStrategy {
    pub maximum_retry_attempts: i64,
}

/// Whether the creating session's tags are passed on to the job's session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct SessionChainingConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_session_tag_chaining: Option<bool>,
}

/// How the training image is pulled, and with whose credentials.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct TrainingImageConfig {
    pub training_repository_access_mode: RepositoryAccessMode,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub training_repository_auth_config: Option<TrainingRepositoryAuthConfig>,
}

/// `Platform` or `Vpc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RepositoryAccessMode {
    Platform,
    Vpc,
}

/// A Lambda function that hands out private-registry credentials.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct TrainingRepositoryAuthConfig {
    pub training_repository_credentials_provider_arn: String,
}

/// A SageMaker Hub data set as a channel's source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct DatasetSource {
    pub dataset_arn: String,
}

/// Acceptance of a gated model's end-user licence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ModelAccessConfig {
    pub accept_eula: bool,
}

/// A SageMaker Hub content the S3 data belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct HubAccessConfig {
    pub hub_content_arn: String,
}

/// One group of a heterogeneous cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct InstanceGroup {
    pub instance_type: String,
    pub instance_count: i64,
    pub instance_group_name: String,
}

/// Placement of the hosts on UltraServers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct InstancePlacementConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_multiple_jobs: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub placement_specifications: Option<Vec<PlacementSpecification>>,
}

/// How many hosts go on one UltraServer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct PlacementSpecification {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ultra_server_id: Option<String>,
    pub instance_count: i64,
}

/// An instance type the job may run on, in order of preference (flexible training plans).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct InstancePreference {
    pub instance_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_count: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub training_plan_arns: Option<Vec<String>>,
}

/// Where the Debugger hook writes tensors, and what it collects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct DebugHookConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_path: Option<String>,
    pub s3_output_path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hook_parameters: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collection_configurations: Option<Vec<CollectionConfiguration>>,
}

/// One Debugger tensor collection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct CollectionConfiguration {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collection_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collection_parameters: Option<BTreeMap<String, String>>,
}

/// A Debugger or profiler rule (`DebugRuleConfiguration` and `ProfilerRuleConfiguration` have
/// the same members).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct RuleConfiguration {
    pub rule_configuration_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_output_path: Option<String>,
    pub rule_evaluator_image: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume_size_in_g_b: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule_parameters: Option<BTreeMap<String, String>>,
}

/// Where TensorBoard event files are written and uploaded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct TensorBoardOutputConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_path: Option<String>,
    pub s3_output_path: String,
}

/// The experiment, trial and run the job is recorded under.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ExperimentConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub experiment_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trial_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trial_component_display_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_name: Option<String>,
}

/// System and framework profiling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ProfilerConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_output_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profiling_interval_in_milliseconds: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profiling_parameters: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disable_profiler: Option<bool>,
}

/// Shell access to the running container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct RemoteDebugConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_remote_debug: Option<bool>,
}

/// Cluster health checks before training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct InfraCheckConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_infra_check: Option<bool>,
}

/// Serverless model customization (fine-tuning or evaluation of a Hub model).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ServerlessJobConfig {
    pub base_model_arn: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accept_eula: Option<bool>,
    pub job_type: ServerlessJobType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customization_technique: Option<CustomizationTechnique>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peft: Option<Peft>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evaluation_type: Option<EvaluationType>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evaluator_arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sequence_length: Option<String>,
}

/// `FineTuning` or `Evaluation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerlessJobType {
    FineTuning,
    Evaluation,
}

/// `SFT`, `DPO`, `RLVR` or `RLAIF`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum CustomizationTechnique {
    Sft,
    Dpo,
    Rlvr,
    Rlaif,
}

/// `LORA`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Peft {
    Lora,
}

/// How a serverless evaluation scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EvaluationType {
    #[serde(rename = "LLMAJEvaluation")]
    LlmajEvaluation,
    CustomScorerEvaluation,
    BenchmarkEvaluation,
}

/// The MLflow tracking server, experiment and run the job logs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct MlflowConfig {
    pub mlflow_resource_arn: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mlflow_experiment_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mlflow_run_name: Option<String>,
}

/// The model package group the trained model is registered in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ModelPackageConfig {
    pub model_package_group_arn: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_model_package_arn: Option<String>,
}

/// A body that does not fit the request's shape: a member of the wrong JSON type, a value
/// outside its enum, a required member missing, an unknown member, or no JSON at all. It names
/// both serde's path (which the API uses to drop unknown members) and SageMaker's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct ParseError {
    /// serde path of the offending element (`InputDataConfig[0].DataSource`), `.` for the root.
    pub path: String,
    /// What serde reported.
    pub message: String,
    /// The member in SageMaker's camelCase path style (`inputDataConfig.1.member.dataSource`).
    pub field: String,
    /// What is wrong with it.
    pub problem: Problem,
}

/// The kinds of [`ParseError`], each rendered its own way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// Not JSON.
    Syntax,
    /// A member the request shape does not have.
    Unknown,
    /// A required member is absent (or null).
    Missing,
    /// A value of the wrong type or outside its enum: the value as shown, and the rule.
    Invalid { value: String, rule: String },
}

/// The map members of the request: their keys are user data, not member names.
const MAP_MEMBERS: [&str; 6] = [
    "HyperParameters",
    "Environment",
    "HookParameters",
    "CollectionParameters",
    "RuleParameters",
    "ProfilingParameters",
];

impl ParseError {
    fn render(&self) -> String {
        match &self.problem {
            Problem::Syntax | Problem::Unknown => format!("{}: {}", self.path, self.message),
            Problem::Missing => format!(
                "Value null at '{}' failed to satisfy constraint: Member must not be null",
                self.field
            ),
            Problem::Invalid { value, rule } => format!(
                "Value '{value}' at '{}' failed to satisfy constraint: {rule}",
                self.field
            ),
        }
    }

    fn from_serde(root: &Value, err: serde_path_to_error::Error<serde_json::Error>) -> Self {
        use serde_path_to_error::Segment;
        let message = err.inner().to_string();
        let mut parts: Vec<String> = Vec::new();
        let mut node = Some(root);
        let mut in_map = false;
        for seg in err.path().iter() {
            match seg {
                Segment::Seq { index } => {
                    parts.push(format!("{}.member", index + 1));
                    node = node.and_then(|v| v.get(index));
                }
                Segment::Map { key } => {
                    if in_map {
                        parts.push(format!("'{key}'.value"));
                        in_map = false;
                    } else {
                        in_map = MAP_MEMBERS.contains(&key.as_str());
                        parts.push(lower_first(key));
                    }
                    node = node.and_then(|v| v.get(key));
                }
                Segment::Enum { variant } => parts.push(lower_first(variant)),
                Segment::Unknown => parts.push("?".into()),
            }
        }
        let problem = if message.starts_with("unknown field") {
            Problem::Unknown
        } else if let Some(name) = backticked(&message, "missing field `") {
            parts.push(lower_first(name));
            Problem::Missing
        } else {
            let value = match node {
                Some(Value::String(s)) => s.clone(),
                Some(v) => v.to_string(),
                None => "null".into(),
            };
            Problem::Invalid {
                value: super::validate::truncate(&value),
                rule: rule_of(&message),
            }
        };
        let field = if parts.is_empty() {
            "request".into()
        } else {
            parts.join(".")
        };
        ParseError {
            path: err.path().to_string(),
            message,
            field,
            problem,
        }
    }
}

/// Removes the member at a serde path such as `InputDataConfig[0].DataSource.Bogus`; a path
/// that ends in list indices (`DebugRuleConfigurations[1]`) removes the whole list. False when
/// there is no such member (or the path is the root).
pub fn remove_member(root: &mut Value, path: &str) -> bool {
    let mut path = path;
    while let Some(stripped) = path.strip_suffix(']') {
        match stripped.rfind('[') {
            Some(i) => path = &stripped[..i],
            None => return false,
        }
    }
    let mut segs: Vec<(String, Option<usize>)> = Vec::new();
    for part in path.split('.') {
        let (name, rest) = part.split_once('[').unwrap_or((part, ""));
        segs.push((name.to_string(), None));
        for idx in rest.split('[').filter(|s| !s.is_empty()) {
            if let Ok(i) = idx.trim_end_matches(']').parse() {
                segs.push((String::new(), Some(i)));
            }
        }
    }
    let Some((last, None)) = segs.pop() else {
        return false;
    };
    let mut cur = root;
    for (name, idx) in segs {
        cur = match idx {
            Some(i) => match cur.get_mut(i) {
                Some(v) => v,
                None => return false,
            },
            None => match cur.get_mut(&name) {
                Some(v) => v,
                None => return false,
            },
        };
    }
    cur.as_object_mut()
        .is_some_and(|m| m.remove(&last).is_some())
}

/// The text between `prefix` and the next backtick.
fn backticked<'a>(message: &'a str, prefix: &str) -> Option<&'a str> {
    message.strip_prefix(prefix)?.split('`').next()
}

/// A member name as SageMaker writes it in a path: `S3OutputPath` → `s3OutputPath`.
pub fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_ascii_lowercase().to_string() + c.as_str())
        .unwrap_or_default()
}

/// SageMaker's wording for what serde expected.
fn rule_of(message: &str) -> String {
    if message.starts_with("unknown variant") {
        // serde writes "`A`", "`A` or `B`" or "one of `A`, `B`, `C`": the names are backticked.
        let allowed: Vec<&str> = message
            .split_once("expected ")
            .map(|(_, e)| e)
            .unwrap_or("")
            .split('`')
            .skip(1)
            .step_by(2)
            .collect();
        return format!(
            "Member must satisfy enum value set: [{}]",
            allowed.join(", ")
        );
    }
    let expected = message.rsplit_once(", expected ").map(|(_, e)| e);
    match expected {
        Some("a string") | Some("string or map") => "Member must be a string".into(),
        Some("i64") | Some("u64") | Some("i32") | Some("u32") => "Member must be an integer".into(),
        Some("a boolean") => "Member must be a boolean".into(),
        Some("a sequence") => "Member must be a list".into(),
        Some("a map") => "Member must be a map".into(),
        Some(e) if e.starts_with("struct ") => "Member must be a structure".into(),
        Some(e) if e.starts_with("enum ") => "Member must be a string".into(),
        _ => message.to_string(),
    }
}

impl CreateTrainingJobRequest {
    /// Parses a request body, naming the first offending member on failure.
    pub fn from_json(text: &str) -> Result<Self, ParseError> {
        let root: Value = serde_json::from_str(text).map_err(|e| ParseError {
            path: ".".into(),
            message: e.to_string(),
            field: "request".into(),
            problem: Problem::Syntax,
        })?;
        serde_path_to_error::deserialize(&root).map_err(|e| ParseError::from_serde(&root, e))
    }

    /// Reads a request stored by an earlier trainyard, which kept several members as raw JSON
    /// without checking them. A member that does not fit its shape is left out (its serde
    /// paths are returned) instead of making the whole job unreadable: such a job could not be
    /// described by any SDK before, and now can.
    pub fn from_stored(text: &str) -> Result<(Self, Vec<String>), ParseError> {
        let mut root: Value = serde_json::from_str(text).map_err(|e| ParseError {
            path: ".".into(),
            message: e.to_string(),
            field: "request".into(),
            problem: Problem::Syntax,
        })?;
        let mut dropped = Vec::new();
        loop {
            let err = match serde_path_to_error::deserialize(&root) {
                Ok(req) => return Ok((req, dropped)),
                Err(e) => ParseError::from_serde(&root, e),
            };
            if dropped.len() >= 20 || !remove_member(&mut root, &err.path) {
                return Err(err);
            }
            dropped.push(err.path);
        }
    }

    /// Each channel's effective input mode: its own `InputMode`, else the job's.
    pub fn channel_mode(&self, channel: &Channel) -> InputMode {
        channel.input_mode.unwrap_or_else(|| {
            self.algorithm_specification
                .as_ref()
                .map(|a| a.training_input_mode)
                .unwrap_or(InputMode::File)
        })
    }

    /// Whether the job runs with its creating session's tags
    /// (`SessionChainingConfig.EnableSessionTagChaining`).
    pub fn tag_chaining(&self) -> bool {
        self.session_chaining_config
            .as_ref()
            .and_then(|c| c.enable_session_tag_chaining)
            .unwrap_or(false)
    }

    /// The number of hosts (`InstanceCount`, at least 1).
    pub fn instance_count(&self) -> usize {
        self.resource_config
            .as_ref()
            .and_then(|r| r.instance_count)
            .unwrap_or(1)
            .max(1) as usize
    }

    /// `MaxRuntimeInSeconds` after defaulting.
    pub fn max_runtime_seconds(&self) -> u64 {
        self.stopping_condition
            .as_ref()
            .and_then(|s| s.max_runtime_in_seconds)
            .unwrap_or(DEFAULT_MAX_RUNTIME_SECONDS as i64)
            .max(1) as u64
    }

    /// Fills in the defaults SageMaker applies, so DescribeTrainingJob echoes them.
    pub fn apply_defaults(&mut self) {
        let sc = self.stopping_condition.get_or_insert(StoppingCondition {
            max_runtime_in_seconds: None,
            max_wait_time_in_seconds: None,
            max_pending_time_in_seconds: None,
        });
        sc.max_runtime_in_seconds
            .get_or_insert(DEFAULT_MAX_RUNTIME_SECONDS as i64);
        self.output_data_config
            .compression_type
            .get_or_insert(OutputCompression::Gzip);
        if let Some(channels) = &mut self.input_data_config {
            for ch in channels {
                if let Some(s3) = &mut ch.data_source.s3_data_source {
                    s3.s3_data_distribution_type
                        .get_or_insert(Distribution::FullyReplicated);
                }
                ch.compression_type.get_or_insert(ChannelCompression::None);
                ch.record_wrapper_type.get_or_insert(RecordWrapper::None);
            }
        }
        self.enable_network_isolation.get_or_insert(false);
        self.enable_inter_container_traffic_encryption
            .get_or_insert(false);
        self.enable_managed_spot_training.get_or_insert(false);
    }
}

/// SageMaker's default `MaxRuntimeInSeconds`: one day.
pub const DEFAULT_MAX_RUNTIME_SECONDS: u64 = 86_400;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_named_with_their_path() {
        let err = CreateTrainingJobRequest::from_json(
            r#"{"TrainingJobName":"a","RoleArn":"r","OutputDataConfig":{"S3OutputPath":"s3://b/o"},
                "InputDataConfig":[{"ChannelName":"train","DataSource":{"S3DataSource":{"S3DataType":"S3Prefix","S3Uri":"s3://b/p","Bogus":1}}}]}"#,
        )
        .unwrap_err();
        assert_eq!(err.path, "InputDataConfig[0].DataSource.S3DataSource.Bogus");
        assert!(
            err.message.contains("unknown field `Bogus`"),
            "{}",
            err.message
        );
    }

    #[test]
    fn bad_enum_values_list_the_accepted_ones() {
        let err = CreateTrainingJobRequest::from_json(
            r#"{"TrainingJobName":"a","RoleArn":"r","OutputDataConfig":{"S3OutputPath":"s3://b/o"},
                "AlgorithmSpecification":{"TrainingInputMode":"Stream"}}"#,
        )
        .unwrap_err();
        assert_eq!(err.path, "AlgorithmSpecification.TrainingInputMode");
        assert!(
            err.message.contains("`File`, `FastFile`, `Pipe`"),
            "{}",
            err.message
        );
    }

    #[test]
    fn shape_errors_name_the_member_in_sagemaker_wording() {
        let base =
            r#""TrainingJobName":"a","RoleArn":"r","OutputDataConfig":{"S3OutputPath":"s3://b/o"}"#;
        for (extra, expected) in [
            (
                r#""DebugHookConfig":"x""#,
                "Value 'x' at 'debugHookConfig' failed to satisfy constraint: Member must be a structure",
            ),
            (
                r#""ProfilerRuleConfigurations":[1,2]"#,
                "Value '1' at 'profilerRuleConfigurations.1.member' failed to satisfy constraint: Member must be a structure",
            ),
            (
                r#""ExperimentConfig":{"RunName":123}"#,
                "Value '123' at 'experimentConfig.runName' failed to satisfy constraint: Member must be a string",
            ),
            (
                r#""DebugHookConfig":{"LocalPath":"/x"}"#,
                "Value null at 'debugHookConfig.s3OutputPath' failed to satisfy constraint: Member must not be null",
            ),
            (
                r#""HyperParameters":{"Epochs":2}"#,
                "Value '2' at 'hyperParameters.'Epochs'.value' failed to satisfy constraint: Member must be a string",
            ),
            (
                r#""RetryStrategy":{"MaximumRetryAttempts":1.5}"#,
                "Value '1.5' at 'retryStrategy.maximumRetryAttempts' failed to satisfy constraint: Member must be an integer",
            ),
            (
                r#""ServerlessJobConfig":{"BaseModelArn":"m","JobType":"Train"}"#,
                "Value 'Train' at 'serverlessJobConfig.jobType' failed to satisfy constraint: Member must satisfy enum value set: [FineTuning, Evaluation]",
            ),
            (
                r#""EnableNetworkIsolation":"yes""#,
                "Value 'yes' at 'enableNetworkIsolation' failed to satisfy constraint: Member must be a boolean",
            ),
        ] {
            let err = CreateTrainingJobRequest::from_json(&format!("{{{base},{extra}}}"))
                .expect_err(extra);
            assert_eq!(err.to_string(), expected, "{extra}");
        }
        let err = CreateTrainingJobRequest::from_json(r#"{"RoleArn":"r"}"#).unwrap_err();
        assert_eq!(err.field, "trainingJobName");
        assert_eq!(err.problem, Problem::Missing);
        let err = CreateTrainingJobRequest::from_json("{").unwrap_err();
        assert_eq!(err.problem, Problem::Syntax);
    }

    #[test]
    fn stored_members_that_no_longer_fit_are_left_out() {
        let (req, dropped) = CreateTrainingJobRequest::from_stored(
            r#"{"TrainingJobName":"a","RoleArn":"r","OutputDataConfig":{"S3OutputPath":"s3://b/o"},
                "DebugHookConfig":"x","ProfilerRuleConfigurations":[{"RuleConfigurationName":"r","RuleEvaluatorImage":"i"},2],
                "ExperimentConfig":{"RunName":"run","Extra":1}}"#,
        )
        .unwrap();
        let mut dropped = dropped;
        dropped.sort();
        assert_eq!(
            dropped,
            [
                "DebugHookConfig",
                "ExperimentConfig.Extra",
                "ProfilerRuleConfigurations[1]"
            ]
        );
        assert!(req.debug_hook_config.is_none() && req.profiler_rule_configurations.is_none());
        assert_eq!(
            req.experiment_config.unwrap().run_name.as_deref(),
            Some("run")
        );
        let err = CreateTrainingJobRequest::from_stored(r#"{"RoleArn":"r"}"#).unwrap_err();
        assert_eq!(err.problem, Problem::Missing);
    }

    #[test]
    fn defaults_are_applied_and_round_trip() {
        let mut r = CreateTrainingJobRequest::from_json(
            r#"{"TrainingJobName":"a","RoleArn":"r","OutputDataConfig":{"S3OutputPath":"s3://b/o"},
                "ResourceConfig":{"InstanceType":"ml.m5.large","InstanceCount":1,"VolumeSizeInGB":10}}"#,
        )
        .unwrap();
        r.apply_defaults();
        assert_eq!(r.max_runtime_seconds(), 86_400);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["ResourceConfig"]["VolumeSizeInGB"], 10);
        assert_eq!(json["OutputDataConfig"]["CompressionType"], "GZIP");
        let back: CreateTrainingJobRequest = serde_json::from_value(json).unwrap();
        assert_eq!(back, r);
    }
}
