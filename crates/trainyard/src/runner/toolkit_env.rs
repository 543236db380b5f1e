//! The `SM_*` environment that the `sagemaker-training` Python toolkit would derive.
//!
//! # Why
//!
//! Images built on the SageMaker deep-learning containers run the `sagemaker-training` toolkit
//! (PyPI `sagemaker-training`, repository `aws/sagemaker-training-toolkit`), which reads the three
//! platform config files (`hyperparameters.json`, `inputdataconfig.json`, `resourceconfig.json`)
//! and exports a family of `SM_*` variables to the training script. A script started *without*
//! the toolkit (a plain image, a custom entrypoint) would not see them, yet many scripts read
//! `SM_MODEL_DIR`, `SM_CHANNEL_TRAIN`, `SM_HPS` or `SM_TRAINING_ENV` unconditionally. This module
//! recomputes those variables on the platform side so such scripts behave the same either way.
//! The values must be byte-identical to the toolkit's (see `container.md` §4.2), which means
//! reproducing Python semantics: `json.loads` of every hyperparameter with a fall-back to the raw
//! string, `json.dumps(v, sort_keys=True, separators=(",", ":"))` with `ensure_ascii=True`, and
//! Python's `str()` / `repr()` for `SM_USER_ARGS`. `serde_json` does neither (it rejects `NaN`,
//! loses object insertion order, overflows on `1e400`), so the module carries a small private
//! model of Python values (`Py`) with its own `json.loads`-compatible parser and renderers.
//!
//! # What
//!
//! [`toolkit_env`] returns `(name, value)` pairs sorted by name. Reference: toolkit 5.1.4,
//! `environment.py` (`Environment.__init__`, `to_env_vars`), `mapping.py` (`to_env_vars`,
//! `to_cmd_args`), `params.py` (reserved names). It produces:
//!
//! * paths: `SM_MODEL_DIR`, `SM_INPUT_DIR`, `SM_INPUT_CONFIG_DIR`, `SM_OUTPUT_DIR`,
//!   `SM_OUTPUT_DATA_DIR`, `SM_OUTPUT_INTERMEDIATE_DIR`, `SM_MODULE_DIR` (all under `/opt/ml`,
//!   or under env `SAGEMAKER_BASE_DIR` when the user environment sets it, as the toolkit does);
//! * channels: `SM_CHANNELS`, `SM_CHANNEL_<NAME>` per channel, `SM_INPUT_DATA_CONFIG`;
//! * hyperparameters: `SM_HPS`, `SM_HP_<NAME>` per user hyperparameter, `SM_USER_ARGS`,
//!   `SM_FRAMEWORK_PARAMS`;
//! * cluster: `SM_HOSTS`, `SM_CURRENT_HOST`, `SM_CURRENT_INSTANCE_TYPE`,
//!   `SM_CURRENT_INSTANCE_GROUP`, `SM_CURRENT_INSTANCE_GROUP_HOSTS`, `SM_INSTANCE_GROUPS`,
//!   `SM_INSTANCE_GROUPS_DICT`, `SM_DISTRIBUTION_INSTANCE_GROUPS`, `SM_IS_HETERO`,
//!   `SM_NETWORK_INTERFACE_NAME`, `SM_RESOURCE_CONFIG`, `SM_TOPOLOGY` (only when
//!   `resourceconfig.json` has a non-empty `topology`);
//! * hardware: `SM_NUM_CPUS`, `SM_NUM_GPUS`, `SM_NUM_NEURONS`;
//! * script-mode plumbing: `SM_MODULE_NAME`, `SM_USER_ENTRY_POINT`, `SM_FRAMEWORK_MODULE`,
//!   `SM_LOG_LEVEL`, always set, as the toolkit sets them: without `sagemaker_program` the
//!   module name is the string `None` and the entry point is empty; env `SAGEMAKER_PROGRAM`
//!   overrides the hyperparameter, while env `SAGEMAKER_SUBMIT_DIRECTORY` and
//!   `SAGEMAKER_CONTAINER_LOG_LEVEL` are overridden by the toolkit itself and so ignored here;
//! * `SM_TRAINING_ENV`: the compact JSON of the toolkit's whole `Environment` object, with the
//!   same 37 keys (`additional_framework_parameters` … `user_entry_point`); no key is missing or
//!   added, only the values listed under divergences can differ;
//! * the plain variables the toolkit writes into its own `os.environ` before starting the
//!   script: `CURRENT_HOST`, `SAGEMAKER_JOB_NAME`, `SAGEMAKER_REGION`.
//!
//! When two names collide after upper-casing (channels `a` and `A`), the later one in the
//! toolkit's iteration order wins, as in Python's dict. That order is the order of the files;
//! it is taken to be the `BTreeMap` order for hyperparameters and the `serde_json::Map` order
//! for channels, which is what the files contain when trainyard writes them from those values.
//!
//! # Known divergences
//!
//! * `SM_TRAINING_ENV.is_smddprun_installed` / `is_smddpmprun_installed` are always `false`:
//!   the toolkit runs `which smddprun` inside the image, which the platform cannot observe.
//! * `SM_NUM_NEURONS` is `64` when the instance type contains `trn2.48xlarge` (the toolkit's
//!   hard-coded case) and `0` otherwise; the toolkit would ask `neuron-ls`.
//! * `SAGEMAKER_REGION` falls back to the user environment's `AWS_DEFAULT_REGION` (what boto3
//!   reads); boto3 could also find a region in `~/.aws/config` inside the image.
//! * `PYTHONPATH`, which the toolkit sets to its own `sys.path`, is not produced.
//! * A variable that a process environment cannot hold (a name with `=`, or a NUL byte
//!   anywhere, both only possible through odd hyperparameter names or values) is left out; the
//!   toolkit would fail with `ValueError` when exporting it. `SM_HPS` still carries the value.
//! * Where the toolkit would crash instead of starting the script, a best-effort value is used
//!   (documented at each place): missing `hosts`/`current_host` in `resourceconfig.json`
//!   (`[]` / `""`), malformed `instance_groups` entries (skipped), a non-string
//!   `sagemaker_job_name`/`sagemaker_region` (rendered with `str()`), and hyperparameters nested
//!   deeper than `MAX_DEPTH` (900) (kept as raw strings; Python raises `RecursionError` near 1000).
//! * A lone UTF-16 surrogate escape (`"\ud800"`) in a hyperparameter decodes to U+FFFD; Python
//!   keeps the surrogate and then fails to put it into the environment.
//! * `repr()` of strings (inside lists/dicts in `SM_USER_ARGS`) escapes the non-printable
//!   characters that are assigned in Unicode (controls, format characters, separators, private
//!   use, surrogates) and the noncharacters, but treats other unassigned code points as
//!   printable; Python escapes those too, by its own Unicode version. Upper-casing of names uses
//!   Rust's Unicode tables rather than Python's, which can differ for very new characters.
//! * `inputdataconfig.json`/`resourceconfig.json` arrive as `serde_json::Value`, so integers
//!   beyond 64 bits there are already floats and `-0` is already `-0.0`; Python keeps them as
//!   integers. Hyperparameters do not have this problem: they are parsed here from the raw text,
//!   with Python's rules (arbitrary-size integers up to Python's 4300-digit conversion limit,
//!   beyond which `json.loads` fails and the raw string is kept; `NaN`, `Infinity`,
//!   `-Infinity`; `1e400` → `inf`).

use std::collections::BTreeMap;

use serde_json::Value;

mod py;

use py::*;

/// A hyperparameter value as the toolkit reads it: Python's `json.loads` of the raw string,
/// rendered back with `json.dumps(sort_keys=True)`; `None` when Python would not parse it
/// (the toolkit then keeps the raw string). What `SM_HPS` holds for one value; public for the
/// fuzz target of this reader.
pub fn hyperparameter_json(raw: &str) -> Option<String> {
    json_loads(raw).map(|v| {
        let mut out = String::new();
        v.write_json(&mut out);
        out
    })
}

/// What the toolkit reads: the three config files, the hardware and the process environment.
#[derive(Debug, Clone, Copy)]
pub struct ToolkitInputs<'a> {
    /// `TRAINING_JOB_NAME`, which the toolkit exposes as `job_name`.
    pub job_name: &'a str,
    /// Raw `hyperparameters.json`: every value is the string as sent to the API.
    pub hyperparameters: &'a BTreeMap<String, String>,
    /// Content of `inputdataconfig.json`.
    pub input_data_config: &'a Value,
    /// Content of `resourceconfig.json`.
    pub resource_config: &'a Value,
    /// `multiprocessing.cpu_count()` inside the container.
    pub num_cpus: usize,
    /// Number of GPUs visible in the container (`nvidia-smi --list-gpus`).
    pub num_gpus: usize,
    /// The user `Environment` of the job (the toolkit reads `SAGEMAKER_PROGRAM`,
    /// `SAGEMAKER_TRAINING_MODULE`, `SAGEMAKER_BASE_DIR`, `SM_HP_MP_PARAMETERS`,
    /// `AWS_DEFAULT_REGION` from it).
    pub env: &'a BTreeMap<String, String>,
}

/// Hyperparameters that the toolkit removes from the user hyperparameters, in addition to every
/// name starting with [`SAGEMAKER_PREFIX`] (`params.SAGEMAKER_HYPERPARAMETERS`).
const RESERVED_HYPERPARAMETERS: [&str; 9] = [
    "sagemaker_program",
    "sagemaker_submit_directory",
    "sagemaker_enable_cloudwatch_metrics",
    "sagemaker_region",
    "sagemaker_container_log_level",
    "sagemaker_job_name",
    "default_user_module_name",
    "_tuning_objective_metric",
    "sagemaker_s3_output",
];

const SAGEMAKER_PREFIX: &str = "sagemaker_";

/// Framework parameters any of which, when truthy, puts the current instance group into
/// `distribution_instance_groups` (unless that list is given explicitly).
const DISTRIBUTION_FLAGS: [&str; 7] = [
    "sagemaker_mpi_enabled",
    "sagemaker_parameter_server_enabled",
    "sagemaker_distributed_dataparallel_enabled",
    "sagemaker_pytorch_ddp_enabled",
    "sagemaker_pytorch_xla_multi_worker_enabled",
    "sagemaker_multi_worker_mirrored_strategy_enabled",
    "sagemaker_torch_distributed_enabled",
];

const DEFAULT_BASE_DIR: &str = "/opt/ml";
const DEFAULT_INSTANCE_GROUP: &str = "homogeneousCluster";
/// `logging.INFO`, the toolkit's default `log_level`.
const DEFAULT_LOG_LEVEL: &str = "20";
/// Nesting depth beyond which a hyperparameter value is kept as a raw string.
pub(super) const MAX_DEPTH: usize = 900;
/// CPython's `sys.int_info.default_max_str_digits`: longer integer literals make `json.loads`
/// raise `ValueError`.
pub(super) const MAX_INT_DIGITS: usize = 4300;

/// Computes the toolkit's environment variables for one host, sorted by name.
pub fn toolkit_env(inputs: &ToolkitInputs<'_>) -> Vec<(String, String)> {
    Derived::new(inputs)
        .env_vars()
        .into_iter()
        .filter(|(name, value)| !name.contains(['=', '\0']) && !value.contains('\0'))
        .collect()
}

/// Filesystem locations, all derived from the base directory.
#[derive(Debug)]
struct Paths {
    code: String,
    model: String,
    input: String,
    input_data: String,
    input_config: String,
    output: String,
    output_data: String,
    output_intermediate: String,
}

impl Paths {
    fn new(base: &str) -> Self {
        let input = path_join(base, "input");
        let output = path_join(base, "output");
        Paths {
            code: path_join(base, "code"),
            model: path_join(base, "model"),
            input_data: path_join(&input, "data"),
            input_config: path_join(&input, "config"),
            output_data: path_join(&output, "data"),
            output_intermediate: path_join(&output, "intermediate"),
            input,
            output,
        }
    }
}

/// `os.path.join(a, b)` for two components.
fn path_join(a: &str, b: &str) -> String {
    if b.starts_with('/') {
        b.to_owned()
    } else if a.is_empty() || a.ends_with('/') {
        format!("{a}{b}")
    } else {
        format!("{a}/{b}")
    }
}

/// The attributes of the toolkit's `Environment` object, as Python values.
#[derive(Debug)]
struct Derived {
    paths: Paths,
    hyperparameters: Vec<(String, Py)>,
    framework_params: Vec<(String, Py)>,
    channel_input_dirs: Vec<(String, Py)>,
    input_data_config: Py,
    resource_config: Py,
    hosts: Py,
    current_host: Py,
    current_instance_type: Py,
    current_instance_group: Py,
    current_instance_group_hosts: Py,
    instance_groups: Py,
    instance_groups_dict: Py,
    distribution_instance_groups: Py,
    distribution_hosts: Py,
    master_hostname: Py,
    network_interface_name: Py,
    topology: Py,
    module_name: String,
    module_dir: String,
    user_entry_point: Py,
    framework_module: Py,
    log_level: Py,
    is_modelparallel_enabled: Py,
    job_name: String,
    num_cpus: usize,
    num_gpus: usize,
    num_neurons: usize,
    sagemaker_job_name: String,
    sagemaker_region: String,
}

impl Derived {
    fn new(inputs: &ToolkitInputs<'_>) -> Self {
        let env = inputs.env;
        let paths = Paths::new(
            env.get("SAGEMAKER_BASE_DIR")
                .map_or(DEFAULT_BASE_DIR, String::as_str),
        );

        let mut sagemaker_hps = Vec::new();
        let mut hyperparameters = Vec::new();
        for (name, raw) in inputs.hyperparameters {
            let value = json_loads(raw).unwrap_or_else(|| Py::Str(raw.clone()));
            if is_reserved(name) {
                sagemaker_hps.push((name.clone(), value));
            } else {
                hyperparameters.push((name.clone(), value));
            }
        }
        let framework_params: Vec<(String, Py)> = sagemaker_hps
            .iter()
            .filter(|(name, _)| !RESERVED_HYPERPARAMETERS.contains(&name.as_str()))
            .cloned()
            .collect();
        let sm_hp = |name: &str| dict_get(&sagemaker_hps, name);
        let framework_param = |name: &str| dict_get(&framework_params, name);

        let resource_config = Py::from_json(inputs.resource_config);
        let rc = |key: &str, default: Py| resource_config.get(key).cloned().unwrap_or(default);
        // The toolkit indexes `hosts` and `current_host` directly and would fail without them.
        let hosts = rc("hosts", Py::List(Vec::new()));
        let current_host = rc("current_host", Py::Str(String::new()));
        let current_instance_type = rc("current_instance_type", Py::Str("local".to_owned()));
        let current_instance_group = rc(
            "current_group_name",
            Py::Str(DEFAULT_INSTANCE_GROUP.to_owned()),
        );
        let network_interface_name = rc("network_interface_name", Py::Str("eth0".to_owned()));
        let topology = rc("topology", Py::List(Vec::new()));

        // Entries without a name (where the toolkit would raise KeyError) are skipped.
        let groups_config = resource_config.get("instance_groups");
        let groups: Vec<(&Py, &Py)> = match groups_config {
            Some(Py::List(items)) => items
                .iter()
                .filter_map(|group| Some((group.get("instance_group_name")?, group)))
                .collect(),
            _ => Vec::new(),
        };
        let group_hosts = |group: &Py| group.get("hosts").cloned().unwrap_or(Py::List(Vec::new()));

        let current_instance_group_hosts = groups
            .iter()
            .find(|(name, _)| py_eq(name, &current_instance_group))
            .map_or(Py::List(Vec::new()), |(_, group)| group_hosts(group));
        let instance_groups = Py::List(groups.iter().map(|(name, _)| (*name).clone()).collect());
        let mut groups_dict = Vec::new();
        for (name, group) in &groups {
            if let Py::Str(name) = name {
                dict_insert(&mut groups_dict, name.clone(), (*group).clone());
            }
        }

        let distribution_instance_groups =
            match framework_param("sagemaker_distribution_instance_groups") {
                Some(explicit) => explicit.clone(),
                None => {
                    let enabled = DISTRIBUTION_FLAGS
                        .iter()
                        .any(|flag| framework_param(flag).is_some_and(Py::truthy));
                    Py::List(if enabled {
                        vec![current_instance_group.clone()]
                    } else {
                        Vec::new()
                    })
                }
            };
        let distribution_hosts = if groups_config.is_some_and(Py::truthy) {
            let mut selected = Vec::new();
            for (name, group) in &groups {
                if py_contains(&distribution_instance_groups, name) {
                    if let Py::List(members) = group_hosts(group) {
                        selected.extend(members);
                    }
                }
            }
            Py::List(selected)
        } else {
            hosts.clone()
        };
        let first = |list: &Py| match list {
            Py::List(items) => items.first().cloned(),
            _ => None,
        };
        let master_hostname = first(&distribution_hosts)
            .or_else(|| first(&hosts))
            .unwrap_or(Py::None);

        // Hardware: only the toolkit's hard-coded Trainium case is knowable from outside.
        let num_neurons = match &current_instance_type {
            Py::Str(kind) if kind.contains("trn2.48xlarge") => 64,
            _ => 0,
        };

        // Script-mode plumbing. An environment SAGEMAKER_PROGRAM (even empty) wins for the module
        // name, a non-empty one for the entry point; the module directory and log level always
        // come from the hyperparameters, whatever the environment says.
        let program_env = env.get("SAGEMAKER_PROGRAM");
        let program_hp = sm_hp("sagemaker_program");
        let module_name = match program_env {
            Some(program) => program.clone(),
            None => program_hp.unwrap_or(&Py::None).to_py_str(),
        };
        let module_name = match module_name.strip_suffix(".py") {
            Some(stem) => stem.to_owned(),
            None => module_name,
        };
        let user_entry_point = match program_env {
            Some(program) if !program.is_empty() => Py::Str(program.clone()),
            _ => program_hp.cloned().unwrap_or(Py::None),
        };
        let module_dir =
            sm_hp("sagemaker_submit_directory").map_or_else(|| paths.code.clone(), Py::to_py_str);
        let log_level = sm_hp("sagemaker_container_log_level")
            .cloned()
            .unwrap_or_else(|| Py::Int(DEFAULT_LOG_LEVEL.to_owned()));
        let framework_module = env
            .get("SAGEMAKER_TRAINING_MODULE")
            .map_or(Py::None, |module| Py::Str(module.clone()));
        // `mp_parameters and mp_parameters != "{}"`: None, the empty string, or a bool.
        let is_modelparallel_enabled = match env.get("SM_HP_MP_PARAMETERS") {
            None => Py::None,
            Some(value) if value.is_empty() => Py::Str(String::new()),
            Some(value) => Py::Bool(value != "{}"),
        };

        // Variables the toolkit assigns to os.environ; a non-string hyperparameter would make
        // that assignment raise, here it is rendered with str().
        let sagemaker_job_name = match sm_hp("sagemaker_job_name") {
            None | Some(Py::None) => String::new(),
            Some(value) => value.to_py_str(),
        };
        let sagemaker_region = match sm_hp("sagemaker_region") {
            Some(value) if value.truthy() => value.to_py_str(),
            Some(_) => String::new(),
            None => env.get("AWS_DEFAULT_REGION").cloned().unwrap_or_default(),
        };

        let input_data_config = Py::from_json(inputs.input_data_config);
        let mut channel_input_dirs = Vec::new();
        if let Py::Dict(channels) = &input_data_config {
            for (channel, _) in channels {
                let path = Py::Str(path_join(&paths.input_data, channel));
                dict_insert(&mut channel_input_dirs, channel.clone(), path);
            }
        }

        Derived {
            paths,
            hyperparameters,
            framework_params,
            channel_input_dirs,
            input_data_config,
            resource_config,
            hosts,
            current_host,
            current_instance_type,
            current_instance_group,
            current_instance_group_hosts,
            instance_groups,
            instance_groups_dict: Py::Dict(groups_dict),
            distribution_instance_groups,
            distribution_hosts,
            master_hostname,
            network_interface_name,
            topology,
            module_name,
            module_dir,
            user_entry_point,
            framework_module,
            log_level,
            is_modelparallel_enabled,
            job_name: inputs.job_name.to_owned(),
            num_cpus: inputs.num_cpus,
            num_gpus: inputs.num_gpus,
            num_neurons,
            sagemaker_job_name,
            sagemaker_region,
        }
    }

    fn is_hetero(&self) -> bool {
        matches!(&self.instance_groups, Py::List(groups) if groups.len() > 1)
    }

    /// `Environment.to_cmd_args()`: sorted `--name value` pairs of the user hyperparameters.
    fn user_args(&self) -> Py {
        let mut sorted: Vec<&(String, Py)> = self.hyperparameters.iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        let mut args = Vec::with_capacity(sorted.len() * 2);
        for (name, value) in sorted {
            let flag = match name.chars().count() {
                0 => String::new(),
                1 => format!("-{name}"),
                _ => format!("--{name}"),
            };
            let rendered = match value {
                Py::Dict(entries) => {
                    let mut entries: Vec<&(String, Py)> = entries.iter().collect();
                    entries.sort_by(|a, b| a.0.cmp(&b.0));
                    entries
                        .iter()
                        .map(|(key, item)| format!("{key}={}", item.to_py_str()))
                        .collect::<Vec<_>>()
                        .join(",")
                }
                Py::None => String::new(),
                other => other.to_py_str(),
            };
            args.push(Py::Str(flag));
            args.push(Py::Str(rendered));
        }
        Py::List(args)
    }

    /// `dict(Environment)`: every property of the toolkit's `Environment` class.
    fn training_env(&self) -> Py {
        let p = &self.paths;
        let s = |value: &str| Py::Str(value.to_owned());
        let n = |value: usize| Py::Int(value.to_string());
        Py::Dict(vec![
            (
                "additional_framework_parameters".into(),
                Py::Dict(self.framework_params.clone()),
            ),
            (
                "channel_input_dirs".into(),
                Py::Dict(self.channel_input_dirs.clone()),
            ),
            ("current_host".into(), self.current_host.clone()),
            (
                "current_instance_group".into(),
                self.current_instance_group.clone(),
            ),
            (
                "current_instance_group_hosts".into(),
                self.current_instance_group_hosts.clone(),
            ),
            (
                "current_instance_type".into(),
                self.current_instance_type.clone(),
            ),
            ("distribution_hosts".into(), self.distribution_hosts.clone()),
            (
                "distribution_instance_groups".into(),
                self.distribution_instance_groups.clone(),
            ),
            ("framework_module".into(), self.framework_module.clone()),
            ("hosts".into(), self.hosts.clone()),
            (
                "hyperparameters".into(),
                Py::Dict(self.hyperparameters.clone()),
            ),
            ("input_config_dir".into(), s(&p.input_config)),
            ("input_data_config".into(), self.input_data_config.clone()),
            ("input_dir".into(), s(&p.input)),
            ("instance_groups".into(), self.instance_groups.clone()),
            (
                "instance_groups_dict".into(),
                self.instance_groups_dict.clone(),
            ),
            ("is_hetero".into(), Py::Bool(self.is_hetero())),
            (
                "is_master".into(),
                Py::Bool(py_eq(&self.current_host, &self.master_hostname)),
            ),
            (
                "is_modelparallel_enabled".into(),
                self.is_modelparallel_enabled.clone(),
            ),
            ("is_smddpmprun_installed".into(), Py::Bool(false)),
            ("is_smddprun_installed".into(), Py::Bool(false)),
            ("job_name".into(), s(&self.job_name)),
            ("log_level".into(), self.log_level.clone()),
            ("master_hostname".into(), self.master_hostname.clone()),
            ("model_dir".into(), s(&p.model)),
            ("module_dir".into(), s(&self.module_dir)),
            ("module_name".into(), s(&self.module_name)),
            (
                "network_interface_name".into(),
                self.network_interface_name.clone(),
            ),
            ("num_cpus".into(), n(self.num_cpus)),
            ("num_gpus".into(), n(self.num_gpus)),
            ("num_neurons".into(), n(self.num_neurons)),
            ("output_data_dir".into(), s(&p.output_data)),
            ("output_dir".into(), s(&p.output)),
            ("output_intermediate_dir".into(), s(&p.output_intermediate)),
            ("resource_config".into(), self.resource_config.clone()),
            ("topology".into(), self.topology.clone()),
            ("user_entry_point".into(), self.user_entry_point.clone()),
        ])
    }

    /// `Environment.to_env_vars()` plus the variables the toolkit puts in its own environment.
    fn env_vars(&self) -> BTreeMap<String, String> {
        let p = &self.paths;
        let s = |value: &str| Py::Str(value.to_owned());
        let n = |value: usize| Py::Int(value.to_string());
        let mut channels: Vec<&String> = self.channel_input_dirs.iter().map(|(k, _)| k).collect();
        channels.sort();
        // Same order as the toolkit's dict literal, so that later keys win on collisions.
        let mut entries: Vec<(String, Py)> = vec![
            ("hosts".into(), self.hosts.clone()),
            (
                "network_interface_name".into(),
                self.network_interface_name.clone(),
            ),
            ("hps".into(), Py::Dict(self.hyperparameters.clone())),
            ("user_entry_point".into(), self.user_entry_point.clone()),
            (
                "framework_params".into(),
                Py::Dict(self.framework_params.clone()),
            ),
            ("resource_config".into(), self.resource_config.clone()),
            ("input_data_config".into(), self.input_data_config.clone()),
            ("output_data_dir".into(), s(&p.output_data)),
            (
                "channels".into(),
                Py::List(channels.into_iter().map(|c| s(c)).collect()),
            ),
            ("current_host".into(), self.current_host.clone()),
            (
                "current_instance_type".into(),
                self.current_instance_type.clone(),
            ),
            (
                "current_instance_group".into(),
                self.current_instance_group.clone(),
            ),
            (
                "current_instance_group_hosts".into(),
                self.current_instance_group_hosts.clone(),
            ),
            ("instance_groups".into(), self.instance_groups.clone()),
            (
                "instance_groups_dict".into(),
                self.instance_groups_dict.clone(),
            ),
            (
                "distribution_instance_groups".into(),
                self.distribution_instance_groups.clone(),
            ),
            ("is_hetero".into(), Py::Bool(self.is_hetero())),
            ("module_name".into(), s(&self.module_name)),
            ("log_level".into(), self.log_level.clone()),
            ("framework_module".into(), self.framework_module.clone()),
            ("input_dir".into(), s(&p.input)),
            ("input_config_dir".into(), s(&p.input_config)),
            ("output_dir".into(), s(&p.output)),
            ("num_cpus".into(), n(self.num_cpus)),
            ("num_gpus".into(), n(self.num_gpus)),
            ("num_neurons".into(), n(self.num_neurons)),
            ("model_dir".into(), s(&p.model)),
            ("module_dir".into(), s(&self.module_dir)),
            ("training_env".into(), self.training_env()),
            ("user_args".into(), self.user_args()),
            ("output_intermediate_dir".into(), s(&p.output_intermediate)),
        ];
        if self.topology.truthy() {
            entries.push(("topology".into(), self.topology.clone()));
        }
        for (channel, path) in &self.channel_input_dirs {
            entries.push((format!("channel_{channel}"), path.clone()));
        }
        for (name, value) in &self.hyperparameters {
            entries.push((format!("hp_{name}"), value.clone()));
        }

        let mut vars = BTreeMap::new();
        for (key, value) in entries {
            vars.insert(format!("SM_{}", key.to_uppercase()), value.to_env_value());
        }
        vars.insert("CURRENT_HOST".into(), self.current_host.to_py_str());
        vars.insert("SAGEMAKER_JOB_NAME".into(), self.sagemaker_job_name.clone());
        vars.insert("SAGEMAKER_REGION".into(), self.sagemaker_region.clone());
        vars
    }
}

fn is_reserved(name: &str) -> bool {
    name.starts_with(SAGEMAKER_PREFIX) || RESERVED_HYPERPARAMETERS.contains(&name)
}

#[cfg(test)]
mod reader_tests {
    use super::hyperparameter_json;

    #[test]
    fn hyperparameter_values_read_as_python_reads_them() {
        assert_eq!(
            hyperparameter_json(r#"{"b": 1, "a": [1.5, NaN]}"#).as_deref(),
            Some(r#"{"a":[1.5,NaN],"b":1}"#)
        );
        assert_eq!(hyperparameter_json("not json"), None);
        let big = "9".repeat(5000);
        assert_eq!(hyperparameter_json(&big), None, "CPython's int digit limit");
    }
}

#[cfg(test)]
mod tests {
    //! Expected values were produced by the toolkit's own code (sagemaker-training 5.1.4), not
    //! by reasoning about it. To regenerate:
    //!
    //! ```text
    //! pip download --no-deps sagemaker-training==5.1.4 && tar xzf sagemaker_training-5.1.4.tar.gz
    //! cp sagemaker_training-5.1.4/src/sagemaker_training/mapping.py /tmp/sm/   # needs only `six`
    //!
    //! # HP_VALUE_CASES, for each raw value R (the SM_USER_ARGS column uses a 2-char key):
    //! cd /tmp/sm && python3 -c 'import json, mapping; R = "[1, 2]"
    //! try: v = json.loads(R)
    //! except ValueError: v = R
    //! print(mapping.to_env_vars({"hp_x": v})["SM_HP_X"], mapping.to_cmd_args({"xx": v})[1])'
    //!
    //! # argument names, variable names, float reprs, os.path.join, the integer digit limit:
    //! python3 -c 'import mapping; print(mapping.to_cmd_args({"k": 1, "é": 2, "": 3,
    //!     "learning-rate": 4, "a.b": "x", "K": None}))'
    //! python3 -c 'import mapping; print(sorted(mapping.to_env_vars({"hp_ß": 1,
    //!     "hp_learning-rate": 2, "hp_a.b": 3, "channel_x-y": "/p", "hp_ﬁle": "f"}).items()))'
    //! python3 -c 'print([repr(x) for x in [0.01, 1e-05, 10.0, 1e16, ...]])'  # FLOAT_REPRS
    //! python3 -c 'import os.path as p; print(p.join("/x/", "model"), p.join("", "model"))'
    //! python3 -c 'import json; json.loads("1" * 4301)'   # ValueError: Exceeds the limit (4300 digits)
    //!
    //! # SCENARIO_*: the whole Environment, reading real config files under SAGEMAKER_BASE_DIR
    //! # (boto3 stubbed: its region is AWS_DEFAULT_REGION; cpu/gpu counts pinned to 8/1):
    //! mkdir -p /tmp/stub/boto3 && printf 'import os\nclass session:\n    class Session:\n        region_name = os.environ.get("AWS_DEFAULT_REGION")\n' > /tmp/stub/boto3/__init__.py
    //! B=/tmp/sm/opt/ml; mkdir -p $B/input/config   # write the scenario's three JSON files there
    //! cd sagemaker_training-5.1.4/src && env -i TRAINING_JOB_NAME=job-1 SAGEMAKER_BASE_DIR=$B \
    //!   PYTHONPATH=.:/tmp/stub <scenario env> python3 -c 'import json, os
    //! from sagemaker_training import environment as E
    //! E.num_cpus = lambda: 8; E.num_gpus = lambda: 1
    //! v = E.Environment().to_env_vars()
    //! v.update({k: os.environ[k] for k in ("CURRENT_HOST", "SAGEMAKER_JOB_NAME", "SAGEMAKER_REGION")})
    //! print(json.dumps(v, sort_keys=True))'
    //! ```
    //!
    //! During development the module was also compared with that harness on ~4,000 random
    //! scenarios and ~140,000 random floats, with no difference outside the documented
    //! divergences.

    use super::*;

    fn run(
        hyperparameters: &BTreeMap<String, String>,
        input_data_config: &Value,
        resource_config: &Value,
        env: &BTreeMap<String, String>,
    ) -> BTreeMap<String, String> {
        let inputs = ToolkitInputs {
            job_name: "job-1",
            hyperparameters,
            input_data_config,
            resource_config,
            num_cpus: 8,
            num_gpus: 1,
            env,
        };
        toolkit_env(&inputs).into_iter().collect()
    }

    fn single_host() -> Value {
        serde_json::json!({"current_host": "algo-1", "hosts": ["algo-1"]})
    }

    fn run_hps(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        let hps = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        run(
            &hps,
            &serde_json::json!({}),
            &single_host(),
            &BTreeMap::new(),
        )
    }

    fn user_args(vars: &BTreeMap<String, String>) -> Vec<String> {
        serde_json::from_str(&vars["SM_USER_ARGS"]).expect("SM_USER_ARGS is a JSON list")
    }

    #[derive(Debug)]
    struct Scenario {
        hyperparameters: &'static str,
        input_data_config: &'static str,
        resource_config: &'static str,
        env: &'static [(&'static str, &'static str)],
        expected: &'static [(&'static str, &'static str)],
    }

    fn check_scenario(scenario: &Scenario) {
        let hps: BTreeMap<String, String> =
            serde_json::from_str(scenario.hyperparameters).expect("hyperparameters");
        let idc: Value = serde_json::from_str(scenario.input_data_config).expect("idc");
        let rc: Value = serde_json::from_str(scenario.resource_config).expect("rc");
        let mut env: BTreeMap<String, String> = scenario
            .env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        env.insert("SAGEMAKER_BASE_DIR".into(), "/tmp/sm/opt/ml".into());
        let actual = run(&hps, &idc, &rc, &env);
        for (key, value) in scenario.expected {
            assert_eq!(actual.get(*key).map(String::as_str), Some(*value), "{key}");
        }
        let expected_keys: Vec<&str> = scenario.expected.iter().map(|(k, _)| *k).collect();
        let actual_keys: Vec<&str> = actual.keys().map(String::as_str).collect();
        assert_eq!(actual_keys, expected_keys);
    }

    #[test]
    fn scenario_single_group_two_hosts() {
        check_scenario(&SCENARIO_SINGLE_GROUP);
    }

    #[test]
    fn scenario_heterogeneous_cluster() {
        check_scenario(&SCENARIO_HETERO);
    }

    #[test]
    fn scenario_minimal_resource_config() {
        check_scenario(&SCENARIO_MINIMAL);
    }

    #[test]
    fn hyperparameter_values_render_like_python() {
        for (raw, hp, arg) in HP_VALUE_CASES {
            let vars = run_hps(&[("xx", raw)]);
            assert_eq!(vars["SM_HP_XX"], *hp, "SM_HP_XX for {raw:?}");
            assert_eq!(user_args(&vars), ["--xx", arg], "SM_USER_ARGS for {raw:?}");
        }
    }

    #[test]
    fn argument_names_and_one_char_keys() {
        let vars = run_hps(&[
            ("k", "1"),
            ("é", "2"),
            ("", "3"),
            ("learning-rate", "4"),
            ("a.b", "x"),
            ("K", "null"),
        ]);
        let expected = [
            "",
            "3",
            "-K",
            "",
            "--a.b",
            "x",
            "-k",
            "1",
            "--learning-rate",
            "4",
            "-é",
            "2",
        ];
        assert_eq!(user_args(&vars), expected);
    }

    #[test]
    fn variable_names_are_upper_cased_without_escaping() {
        let idc = serde_json::json!({"x-y": {"TrainingInputMode": "File"}});
        let hps = [
            ("ß", "1"),
            ("learning-rate", "2"),
            ("a.b", "3"),
            ("ﬁle", "f"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        let vars = run(&hps, &idc, &single_host(), &BTreeMap::new());
        for (key, value) in [
            ("SM_CHANNEL_X-Y", "/opt/ml/input/data/x-y"),
            ("SM_HP_A.B", "3"),
            ("SM_HP_FILE", "f"),
            ("SM_HP_LEARNING-RATE", "2"),
            ("SM_HP_SS", "1"),
        ] {
            assert_eq!(vars.get(key).map(String::as_str), Some(value), "{key}");
        }
    }

    #[test]
    fn reserved_hyperparameters_are_not_user_hyperparameters() {
        let vars = run_hps(&[
            ("epochs", "3"),
            ("sagemaker_program", "\"train.py\""),
            ("sagemaker_custom", "\"kept\""),
            ("sagemaker_s3_output", "\"s3://b/o\""),
            ("_tuning_objective_metric", "\"loss\""),
            ("default_user_module_name", "\"m\""),
        ]);
        assert_eq!(vars["SM_HPS"], r#"{"epochs":3}"#);
        assert_eq!(user_args(&vars), ["--epochs", "3"]);
        assert_eq!(
            vars["SM_FRAMEWORK_PARAMS"],
            r#"{"sagemaker_custom":"kept"}"#
        );
        let hp_vars: Vec<&String> = vars.keys().filter(|k| k.starts_with("SM_HP_")).collect();
        assert_eq!(hp_vars, ["SM_HP_EPOCHS"]);
    }

    #[test]
    fn default_paths_are_under_opt_ml() {
        let vars = run_hps(&[]);
        for (key, value) in [
            ("SM_MODEL_DIR", "/opt/ml/model"),
            ("SM_INPUT_DIR", "/opt/ml/input"),
            ("SM_INPUT_CONFIG_DIR", "/opt/ml/input/config"),
            ("SM_OUTPUT_DIR", "/opt/ml/output"),
            ("SM_OUTPUT_DATA_DIR", "/opt/ml/output/data"),
            ("SM_OUTPUT_INTERMEDIATE_DIR", "/opt/ml/output/intermediate"),
            ("SM_MODULE_DIR", "/opt/ml/code"),
        ] {
            assert_eq!(vars[key], value, "{key}");
        }
    }

    #[test]
    fn path_join_matches_os_path_join() {
        assert_eq!(path_join("/x/", "model"), "/x/model");
        assert_eq!(path_join("", "model"), "model");
        assert_eq!(path_join("/a", "/b"), "/b");
        assert_eq!(path_join("/opt/ml", "code"), "/opt/ml/code");
        assert_eq!(path_join("rel", "input"), "rel/input");
    }

    /// (value, Python `repr(value)`)
    const FLOAT_REPRS: &[(f64, &str)] = &[
        (0.01, "0.01"),
        (1e-05, "1e-05"),
        (10.0, "10.0"),
        (1e16, "1e+16"),
        (-1e16, "-1e+16"),
        (1e15, "1000000000000000.0"),
        (123_456_789_012_345.6, "123456789012345.6"),
        (0.0001, "0.0001"),
        (0.00012, "0.00012"),
        (-0.0, "-0.0"),
        (0.0, "0.0"),
        (5e-324, "5e-324"),
        (1.797_693_134_862_315_7e308, "1.7976931348623157e+308"),
        (2.5, "2.5"),
        (1.0 / 3.0, "0.3333333333333333"),
        // An exact tie at 17 digits (…315.5625): Python rounds it to even.
        (32_816_891_869_315.0 + 9.0 / 16.0, "32816891869315.562"),
        (100.0, "100.0"),
        (1e22, "1e+22"),
        (9_007_199_254_740_993.0, "9007199254740992.0"),
    ];

    #[test]
    fn float_repr_matches_python() {
        for (value, expected) in FLOAT_REPRS {
            assert_eq!(float_repr(*value), *expected, "{value:e}");
        }
    }

    #[test]
    fn integers_beyond_python_digit_limit_stay_raw() {
        let accepted = "1".repeat(MAX_INT_DIGITS);
        assert_eq!(json_loads(&accepted), Some(Py::Int(accepted.clone())));
        let rejected = "1".repeat(MAX_INT_DIGITS + 1);
        assert_eq!(json_loads(&rejected), None);
        let vars = run_hps(&[("n", &rejected)]);
        assert_eq!(vars["SM_HPS"], format!(r#"{{"n":"{rejected}"}}"#));
    }

    #[test]
    fn deep_nesting_is_bounded() {
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        let vars = run_hps(&[("n", &ok)]);
        assert_eq!(vars["SM_HP_N"], ok);
        let too_deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert_eq!(json_loads(&too_deep), None);
    }

    #[test]
    fn lone_surrogate_becomes_replacement_character() {
        // Documented divergence: Python keeps "\ud83d" and then cannot export it.
        let vars = run_hps(&[("s", r#""\ud83dx""#)]);
        assert_eq!(vars["SM_HP_S"], "\u{fffd}x");
        assert_eq!(vars["SM_HPS"], r#"{"s":"\ufffdx"}"#);
    }

    #[test]
    fn variables_a_process_environment_cannot_hold_are_left_out() {
        let vars = run_hps(&[("a=b", "1"), ("nul", r#""x\u0000y""#)]);
        assert!(!vars.contains_key("SM_HP_A=B"));
        assert!(!vars.contains_key("SM_HP_NUL"));
        assert_eq!(vars["SM_HPS"], r#"{"a=b":1,"nul":"x\u0000y"}"#);
    }

    #[test]
    fn duplicate_channel_names_after_upper_casing_keep_the_last() {
        let idc = serde_json::json!({"A": {}, "a": {}});
        let vars = run(&BTreeMap::new(), &idc, &single_host(), &BTreeMap::new());
        assert_eq!(vars["SM_CHANNEL_A"], "/opt/ml/input/data/a");
        assert_eq!(vars["SM_CHANNELS"], r#"["A","a"]"#);
    }

    // (raw hyperparameter value, SM_HP_X, value in SM_USER_ARGS)
    const HP_VALUE_CASES: &[(&str, &str, &str)] = &[
        ("10", "10", "10"),
        ("-3", "-3", "-3"),
        ("0.01", "0.01", "0.01"),
        ("1e-05", "1e-05", "1e-05"),
        ("1e-5", "1e-05", "1e-05"),
        ("10.0", "10.0", "10.0"),
        ("1e16", "1e+16", "1e+16"),
        ("1E16", "1e+16", "1e+16"),
        ("-2.5", "-2.5", "-2.5"),
        ("0.0001", "0.0001", "0.0001"),
        (
            "123456789012345678",
            "123456789012345678",
            "123456789012345678",
        ),
        ("1.5e300", "1.5e+300", "1.5e+300"),
        ("-0.0", "-0.0", "-0.0"),
        ("-0", "0", "0"),
        ("5e-324", "5e-324", "5e-324"),
        ("1e400", "Infinity", "inf"),
        ("-1e400", "-Infinity", "-inf"),
        ("NaN", "NaN", "nan"),
        ("Infinity", "Infinity", "inf"),
        ("-Infinity", "-Infinity", "-inf"),
        ("true", "true", "True"),
        ("false", "false", "False"),
        ("null", "", ""),
        ("\"train.py\"", "train.py", "train.py"),
        ("train.py", "train.py", "train.py"),
        ("\"\"", "", ""),
        ("", "", ""),
        (" 7 ", "7", "7"),
        ("abc", "abc", "abc"),
        ("\"a'b\"", "a'b", "a'b"),
        ("\"a\\\"b\"", "a\"b", "a\"b"),
        ("\"it's \\\"q\\\"\"", "it's \"q\"", "it's \"q\""),
        ("[1, 2]", "[1,2]", "[1, 2]"),
        (
            "[1,2.0,\"x\",null,true]",
            "[1,2.0,\"x\",null,true]",
            "[1, 2.0, 'x', None, True]",
        ),
        ("{\"a\": 1}", "{\"a\":1}", "a=1"),
        (
            "{\"z\": 1, \"a\": {\"y\": [], \"b\": \"c\"}}",
            "{\"a\":{\"b\":\"c\",\"y\":[]},\"z\":1}",
            "a={'y': [], 'b': 'c'},z=1",
        ),
        (
            "{\"a\": 1, \"a\": 2, \"b\": null}",
            "{\"a\":2,\"b\":null}",
            "a=2,b=None",
        ),
        ("[]", "[]", "[]"),
        ("{}", "{}", ""),
        ("\"caf\\u00e9 \\ud83d\\ude00\"", "café 😀", "café 😀"),
        ("café 😀", "café 😀", "café 😀"),
        (
            "[\"caf\\u00e9\", \"\\u00ad\\u2028\\t\\u0001\\u007f\", \"\\ud83d\\ude00\\ue000\"]",
            "[\"caf\\u00e9\",\"\\u00ad\\u2028\\t\\u0001\\u007f\",\"\\ud83d\\ude00\\ue000\"]",
            "['café', '\\xad\\u2028\\t\\x01\\x7f', '😀\\ue000']",
        ),
        ("[1,]", "[1,]", "[1,]"),
        ("01", "01", "01"),
        ("1.", "1.", "1."),
        ("tru", "tru", "tru"),
        ("\"tab\there\"", "\"tab\there\"", "\"tab\there\""),
        ("\u{feff}1", "\u{feff}1", "\u{feff}1"),
        (
            "111111111111111111111111111111",
            "111111111111111111111111111111",
            "111111111111111111111111111111",
        ),
        ("[[[\"deep\"]]]", "[[[\"deep\"]]]", "[[['deep']]]"),
        ("{\"k\": \"it's\"}", "{\"k\":\"it's\"}", "k=it's"),
        (
            "[\"it's\", \"say \\\"hi\\\"\", \"both ' \\\"\"]",
            "[\"it's\",\"say \\\"hi\\\"\",\"both ' \\\"\"]",
            "[\"it's\", 'say \"hi\"', 'both \\' \"']",
        ),
        ("\"back\\\\slash\"", "back\\slash", "back\\slash"),
        (
            "[0.1, 1e22, 1e-7, 100.0]",
            "[0.1,1e+22,1e-07,100.0]",
            "[0.1, 1e+22, 1e-07, 100.0]",
        ),
    ];

    const SCENARIO_SINGLE_GROUP: Scenario = Scenario {
        hyperparameters: "{\"epochs\": \"10\", \"lr\": \"0.01\", \"learning-rate\": \"1e-05\", \"a.b\": \"true\", \"k\": \"[1, 2.5, \\\"x\\\", {\\\"b\\\": null, \\\"a\\\": true}]\", \"d\": \"{\\\"z\\\": 1, \\\"a\\\": \\\"q'\\\"}\", \"name\": \"\\\"caf\\\\u00e9 \\\\ud83d\\\\ude00\\\"\", \"big\": \"1e16\", \"neg\": \"-3\", \"plain\": \"some text\", \"sagemaker_program\": \"\\\"train.py\\\"\", \"sagemaker_submit_directory\": \"\\\"s3://bucket/prefix/source/sourcedir.tar.gz\\\"\", \"sagemaker_region\": \"\\\"us-west-2\\\"\", \"sagemaker_mpi_enabled\": \"true\", \"sagemaker_container_log_level\": \"20\", \"sagemaker_job_name\": \"\\\"job-1\\\"\", \"_tuning_objective_metric\": \"\\\"loss\\\"\", \"default_user_module_name\": \"\\\"x\\\"\"}",
        input_data_config: "{\"validation\": {\"TrainingInputMode\": \"Pipe\", \"S3DistributionType\": \"FullyReplicated\", \"RecordWrapperType\": \"RecordIO\"}, \"train\": {\"ContentType\": \"text/csv\", \"TrainingInputMode\": \"File\", \"S3DistributionType\": \"ShardedByS3Key\", \"RecordWrapperType\": \"None\"}, \"test\": {\"TrainingInputMode\": \"FastFile\", \"S3DistributionType\": \"FullyReplicated\", \"RecordWrapperType\": \"None\"}}",
        resource_config: "{\"current_host\": \"algo-2\", \"hosts\": [\"algo-1\", \"algo-2\"], \"network_interface_name\": \"eth0\", \"current_instance_type\": \"ml.g5.2xlarge\", \"current_group_name\": \"homogeneousCluster\", \"instance_groups\": [{\"instance_group_name\": \"homogeneousCluster\", \"instance_type\": \"ml.g5.2xlarge\", \"hosts\": [\"algo-1\", \"algo-2\"]}]}",
        env: &[(
            "SAGEMAKER_TRAINING_MODULE",
            "sagemaker_pytorch_container.training:main",
        )],
        expected: &[
            ("CURRENT_HOST", "algo-2"),
            ("SAGEMAKER_JOB_NAME", "job-1"),
            ("SAGEMAKER_REGION", "us-west-2"),
            ("SM_CHANNELS", "[\"test\",\"train\",\"validation\"]"),
            ("SM_CHANNEL_TEST", "/tmp/sm/opt/ml/input/data/test"),
            ("SM_CHANNEL_TRAIN", "/tmp/sm/opt/ml/input/data/train"),
            (
                "SM_CHANNEL_VALIDATION",
                "/tmp/sm/opt/ml/input/data/validation",
            ),
            ("SM_CURRENT_HOST", "algo-2"),
            ("SM_CURRENT_INSTANCE_GROUP", "homogeneousCluster"),
            ("SM_CURRENT_INSTANCE_GROUP_HOSTS", "[\"algo-1\",\"algo-2\"]"),
            ("SM_CURRENT_INSTANCE_TYPE", "ml.g5.2xlarge"),
            (
                "SM_DISTRIBUTION_INSTANCE_GROUPS",
                "[\"homogeneousCluster\"]",
            ),
            (
                "SM_FRAMEWORK_MODULE",
                "sagemaker_pytorch_container.training:main",
            ),
            ("SM_FRAMEWORK_PARAMS", "{\"sagemaker_mpi_enabled\":true}"),
            ("SM_HOSTS", "[\"algo-1\",\"algo-2\"]"),
            (
                "SM_HPS",
                "{\"a.b\":true,\"big\":1e+16,\"d\":{\"a\":\"q'\",\"z\":1},\"epochs\":10,\"k\":[1,2.5,\"x\",{\"a\":true,\"b\":null}],\"learning-rate\":1e-05,\"lr\":0.01,\"name\":\"caf\\u00e9 \\ud83d\\ude00\",\"neg\":-3,\"plain\":\"some text\"}",
            ),
            ("SM_HP_A.B", "true"),
            ("SM_HP_BIG", "1e+16"),
            ("SM_HP_D", "{\"a\":\"q'\",\"z\":1}"),
            ("SM_HP_EPOCHS", "10"),
            ("SM_HP_K", "[1,2.5,\"x\",{\"a\":true,\"b\":null}]"),
            ("SM_HP_LEARNING-RATE", "1e-05"),
            ("SM_HP_LR", "0.01"),
            ("SM_HP_NAME", "café 😀"),
            ("SM_HP_NEG", "-3"),
            ("SM_HP_PLAIN", "some text"),
            ("SM_INPUT_CONFIG_DIR", "/tmp/sm/opt/ml/input/config"),
            (
                "SM_INPUT_DATA_CONFIG",
                "{\"test\":{\"RecordWrapperType\":\"None\",\"S3DistributionType\":\"FullyReplicated\",\"TrainingInputMode\":\"FastFile\"},\"train\":{\"ContentType\":\"text/csv\",\"RecordWrapperType\":\"None\",\"S3DistributionType\":\"ShardedByS3Key\",\"TrainingInputMode\":\"File\"},\"validation\":{\"RecordWrapperType\":\"RecordIO\",\"S3DistributionType\":\"FullyReplicated\",\"TrainingInputMode\":\"Pipe\"}}",
            ),
            ("SM_INPUT_DIR", "/tmp/sm/opt/ml/input"),
            ("SM_INSTANCE_GROUPS", "[\"homogeneousCluster\"]"),
            (
                "SM_INSTANCE_GROUPS_DICT",
                "{\"homogeneousCluster\":{\"hosts\":[\"algo-1\",\"algo-2\"],\"instance_group_name\":\"homogeneousCluster\",\"instance_type\":\"ml.g5.2xlarge\"}}",
            ),
            ("SM_IS_HETERO", "false"),
            ("SM_LOG_LEVEL", "20"),
            ("SM_MODEL_DIR", "/tmp/sm/opt/ml/model"),
            (
                "SM_MODULE_DIR",
                "s3://bucket/prefix/source/sourcedir.tar.gz",
            ),
            ("SM_MODULE_NAME", "train"),
            ("SM_NETWORK_INTERFACE_NAME", "eth0"),
            ("SM_NUM_CPUS", "8"),
            ("SM_NUM_GPUS", "1"),
            ("SM_NUM_NEURONS", "0"),
            ("SM_OUTPUT_DATA_DIR", "/tmp/sm/opt/ml/output/data"),
            ("SM_OUTPUT_DIR", "/tmp/sm/opt/ml/output"),
            (
                "SM_OUTPUT_INTERMEDIATE_DIR",
                "/tmp/sm/opt/ml/output/intermediate",
            ),
            (
                "SM_RESOURCE_CONFIG",
                "{\"current_group_name\":\"homogeneousCluster\",\"current_host\":\"algo-2\",\"current_instance_type\":\"ml.g5.2xlarge\",\"hosts\":[\"algo-1\",\"algo-2\"],\"instance_groups\":[{\"hosts\":[\"algo-1\",\"algo-2\"],\"instance_group_name\":\"homogeneousCluster\",\"instance_type\":\"ml.g5.2xlarge\"}],\"network_interface_name\":\"eth0\"}",
            ),
            (
                "SM_TRAINING_ENV",
                "{\"additional_framework_parameters\":{\"sagemaker_mpi_enabled\":true},\"channel_input_dirs\":{\"test\":\"/tmp/sm/opt/ml/input/data/test\",\"train\":\"/tmp/sm/opt/ml/input/data/train\",\"validation\":\"/tmp/sm/opt/ml/input/data/validation\"},\"current_host\":\"algo-2\",\"current_instance_group\":\"homogeneousCluster\",\"current_instance_group_hosts\":[\"algo-1\",\"algo-2\"],\"current_instance_type\":\"ml.g5.2xlarge\",\"distribution_hosts\":[\"algo-1\",\"algo-2\"],\"distribution_instance_groups\":[\"homogeneousCluster\"],\"framework_module\":\"sagemaker_pytorch_container.training:main\",\"hosts\":[\"algo-1\",\"algo-2\"],\"hyperparameters\":{\"a.b\":true,\"big\":1e+16,\"d\":{\"a\":\"q'\",\"z\":1},\"epochs\":10,\"k\":[1,2.5,\"x\",{\"a\":true,\"b\":null}],\"learning-rate\":1e-05,\"lr\":0.01,\"name\":\"caf\\u00e9 \\ud83d\\ude00\",\"neg\":-3,\"plain\":\"some text\"},\"input_config_dir\":\"/tmp/sm/opt/ml/input/config\",\"input_data_config\":{\"test\":{\"RecordWrapperType\":\"None\",\"S3DistributionType\":\"FullyReplicated\",\"TrainingInputMode\":\"FastFile\"},\"train\":{\"ContentType\":\"text/csv\",\"RecordWrapperType\":\"None\",\"S3DistributionType\":\"ShardedByS3Key\",\"TrainingInputMode\":\"File\"},\"validation\":{\"RecordWrapperType\":\"RecordIO\",\"S3DistributionType\":\"FullyReplicated\",\"TrainingInputMode\":\"Pipe\"}},\"input_dir\":\"/tmp/sm/opt/ml/input\",\"instance_groups\":[\"homogeneousCluster\"],\"instance_groups_dict\":{\"homogeneousCluster\":{\"hosts\":[\"algo-1\",\"algo-2\"],\"instance_group_name\":\"homogeneousCluster\",\"instance_type\":\"ml.g5.2xlarge\"}},\"is_hetero\":false,\"is_master\":false,\"is_modelparallel_enabled\":null,\"is_smddpmprun_installed\":false,\"is_smddprun_installed\":false,\"job_name\":\"job-1\",\"log_level\":20,\"master_hostname\":\"algo-1\",\"model_dir\":\"/tmp/sm/opt/ml/model\",\"module_dir\":\"s3://bucket/prefix/source/sourcedir.tar.gz\",\"module_name\":\"train\",\"network_interface_name\":\"eth0\",\"num_cpus\":8,\"num_gpus\":1,\"num_neurons\":0,\"output_data_dir\":\"/tmp/sm/opt/ml/output/data\",\"output_dir\":\"/tmp/sm/opt/ml/output\",\"output_intermediate_dir\":\"/tmp/sm/opt/ml/output/intermediate\",\"resource_config\":{\"current_group_name\":\"homogeneousCluster\",\"current_host\":\"algo-2\",\"current_instance_type\":\"ml.g5.2xlarge\",\"hosts\":[\"algo-1\",\"algo-2\"],\"instance_groups\":[{\"hosts\":[\"algo-1\",\"algo-2\"],\"instance_group_name\":\"homogeneousCluster\",\"instance_type\":\"ml.g5.2xlarge\"}],\"network_interface_name\":\"eth0\"},\"topology\":[],\"user_entry_point\":\"train.py\"}",
            ),
            (
                "SM_USER_ARGS",
                "[\"--a.b\",\"True\",\"--big\",\"1e+16\",\"-d\",\"a=q',z=1\",\"--epochs\",\"10\",\"-k\",\"[1, 2.5, 'x', {'b': None, 'a': True}]\",\"--learning-rate\",\"1e-05\",\"--lr\",\"0.01\",\"--name\",\"caf\\u00e9 \\ud83d\\ude00\",\"--neg\",\"-3\",\"--plain\",\"some text\"]",
            ),
            ("SM_USER_ENTRY_POINT", "train.py"),
        ],
    };

    const SCENARIO_HETERO: Scenario = Scenario {
        hyperparameters: "{\"batch_size\": \"64\", \"sagemaker_distribution_instance_groups\": \"[\\\"gpu\\\"]\", \"sagemaker_pytorch_ddp_enabled\": \"true\", \"sagemaker_program\": \"\\\"pkg.train\\\"\", \"sagemaker_container_log_level\": \"10\", \"sagemaker_s3_output\": \"\\\"s3://b/out\\\"\", \"_tuning_objective_metric\": \"\\\"val:loss\\\"\"}",
        input_data_config: "{}",
        resource_config: "{\"current_host\": \"algo-3\", \"hosts\": [\"algo-1\", \"algo-10\", \"algo-2\", \"algo-3\"], \"network_interface_name\": \"ethwe\", \"current_instance_type\": \"ml.trn2.48xlarge\", \"current_group_name\": \"gpu\", \"instance_groups\": [{\"instance_group_name\": \"cpu\", \"instance_type\": \"ml.c5.xlarge\", \"hosts\": [\"algo-1\", \"algo-10\"]}, {\"instance_group_name\": \"gpu\", \"instance_type\": \"ml.trn2.48xlarge\", \"hosts\": [\"algo-2\", \"algo-3\"]}], \"topology\": [{\"hostName\": \"algo-2\", \"capacityUnitId\": \"cu-1\"}, {\"hostName\": \"algo-3\", \"capacityUnitId\": \"cu-1\"}]}",
        env: &[
            ("SAGEMAKER_PROGRAM", "main.py"),
            ("AWS_DEFAULT_REGION", "eu-west-1"),
            ("SM_HP_MP_PARAMETERS", "{\"partitions\":2}"),
            ("SAGEMAKER_SUBMIT_DIRECTORY", "/ignored"),
        ],
        expected: &[
            ("CURRENT_HOST", "algo-3"),
            ("SAGEMAKER_JOB_NAME", ""),
            ("SAGEMAKER_REGION", "eu-west-1"),
            ("SM_CHANNELS", "[]"),
            ("SM_CURRENT_HOST", "algo-3"),
            ("SM_CURRENT_INSTANCE_GROUP", "gpu"),
            ("SM_CURRENT_INSTANCE_GROUP_HOSTS", "[\"algo-2\",\"algo-3\"]"),
            ("SM_CURRENT_INSTANCE_TYPE", "ml.trn2.48xlarge"),
            ("SM_DISTRIBUTION_INSTANCE_GROUPS", "[\"gpu\"]"),
            ("SM_FRAMEWORK_MODULE", ""),
            (
                "SM_FRAMEWORK_PARAMS",
                "{\"sagemaker_distribution_instance_groups\":[\"gpu\"],\"sagemaker_pytorch_ddp_enabled\":true}",
            ),
            ("SM_HOSTS", "[\"algo-1\",\"algo-10\",\"algo-2\",\"algo-3\"]"),
            ("SM_HPS", "{\"batch_size\":64}"),
            ("SM_HP_BATCH_SIZE", "64"),
            ("SM_INPUT_CONFIG_DIR", "/tmp/sm/opt/ml/input/config"),
            ("SM_INPUT_DATA_CONFIG", "{}"),
            ("SM_INPUT_DIR", "/tmp/sm/opt/ml/input"),
            ("SM_INSTANCE_GROUPS", "[\"cpu\",\"gpu\"]"),
            (
                "SM_INSTANCE_GROUPS_DICT",
                "{\"cpu\":{\"hosts\":[\"algo-1\",\"algo-10\"],\"instance_group_name\":\"cpu\",\"instance_type\":\"ml.c5.xlarge\"},\"gpu\":{\"hosts\":[\"algo-2\",\"algo-3\"],\"instance_group_name\":\"gpu\",\"instance_type\":\"ml.trn2.48xlarge\"}}",
            ),
            ("SM_IS_HETERO", "true"),
            ("SM_LOG_LEVEL", "10"),
            ("SM_MODEL_DIR", "/tmp/sm/opt/ml/model"),
            ("SM_MODULE_DIR", "/tmp/sm/opt/ml/code"),
            ("SM_MODULE_NAME", "main"),
            ("SM_NETWORK_INTERFACE_NAME", "ethwe"),
            ("SM_NUM_CPUS", "8"),
            ("SM_NUM_GPUS", "1"),
            ("SM_NUM_NEURONS", "64"),
            ("SM_OUTPUT_DATA_DIR", "/tmp/sm/opt/ml/output/data"),
            ("SM_OUTPUT_DIR", "/tmp/sm/opt/ml/output"),
            (
                "SM_OUTPUT_INTERMEDIATE_DIR",
                "/tmp/sm/opt/ml/output/intermediate",
            ),
            (
                "SM_RESOURCE_CONFIG",
                "{\"current_group_name\":\"gpu\",\"current_host\":\"algo-3\",\"current_instance_type\":\"ml.trn2.48xlarge\",\"hosts\":[\"algo-1\",\"algo-10\",\"algo-2\",\"algo-3\"],\"instance_groups\":[{\"hosts\":[\"algo-1\",\"algo-10\"],\"instance_group_name\":\"cpu\",\"instance_type\":\"ml.c5.xlarge\"},{\"hosts\":[\"algo-2\",\"algo-3\"],\"instance_group_name\":\"gpu\",\"instance_type\":\"ml.trn2.48xlarge\"}],\"network_interface_name\":\"ethwe\",\"topology\":[{\"capacityUnitId\":\"cu-1\",\"hostName\":\"algo-2\"},{\"capacityUnitId\":\"cu-1\",\"hostName\":\"algo-3\"}]}",
            ),
            (
                "SM_TOPOLOGY",
                "[{\"capacityUnitId\":\"cu-1\",\"hostName\":\"algo-2\"},{\"capacityUnitId\":\"cu-1\",\"hostName\":\"algo-3\"}]",
            ),
            (
                "SM_TRAINING_ENV",
                "{\"additional_framework_parameters\":{\"sagemaker_distribution_instance_groups\":[\"gpu\"],\"sagemaker_pytorch_ddp_enabled\":true},\"channel_input_dirs\":{},\"current_host\":\"algo-3\",\"current_instance_group\":\"gpu\",\"current_instance_group_hosts\":[\"algo-2\",\"algo-3\"],\"current_instance_type\":\"ml.trn2.48xlarge\",\"distribution_hosts\":[\"algo-2\",\"algo-3\"],\"distribution_instance_groups\":[\"gpu\"],\"framework_module\":null,\"hosts\":[\"algo-1\",\"algo-10\",\"algo-2\",\"algo-3\"],\"hyperparameters\":{\"batch_size\":64},\"input_config_dir\":\"/tmp/sm/opt/ml/input/config\",\"input_data_config\":{},\"input_dir\":\"/tmp/sm/opt/ml/input\",\"instance_groups\":[\"cpu\",\"gpu\"],\"instance_groups_dict\":{\"cpu\":{\"hosts\":[\"algo-1\",\"algo-10\"],\"instance_group_name\":\"cpu\",\"instance_type\":\"ml.c5.xlarge\"},\"gpu\":{\"hosts\":[\"algo-2\",\"algo-3\"],\"instance_group_name\":\"gpu\",\"instance_type\":\"ml.trn2.48xlarge\"}},\"is_hetero\":true,\"is_master\":false,\"is_modelparallel_enabled\":true,\"is_smddpmprun_installed\":false,\"is_smddprun_installed\":false,\"job_name\":\"job-1\",\"log_level\":10,\"master_hostname\":\"algo-2\",\"model_dir\":\"/tmp/sm/opt/ml/model\",\"module_dir\":\"/tmp/sm/opt/ml/code\",\"module_name\":\"main\",\"network_interface_name\":\"ethwe\",\"num_cpus\":8,\"num_gpus\":1,\"num_neurons\":64,\"output_data_dir\":\"/tmp/sm/opt/ml/output/data\",\"output_dir\":\"/tmp/sm/opt/ml/output\",\"output_intermediate_dir\":\"/tmp/sm/opt/ml/output/intermediate\",\"resource_config\":{\"current_group_name\":\"gpu\",\"current_host\":\"algo-3\",\"current_instance_type\":\"ml.trn2.48xlarge\",\"hosts\":[\"algo-1\",\"algo-10\",\"algo-2\",\"algo-3\"],\"instance_groups\":[{\"hosts\":[\"algo-1\",\"algo-10\"],\"instance_group_name\":\"cpu\",\"instance_type\":\"ml.c5.xlarge\"},{\"hosts\":[\"algo-2\",\"algo-3\"],\"instance_group_name\":\"gpu\",\"instance_type\":\"ml.trn2.48xlarge\"}],\"network_interface_name\":\"ethwe\",\"topology\":[{\"capacityUnitId\":\"cu-1\",\"hostName\":\"algo-2\"},{\"capacityUnitId\":\"cu-1\",\"hostName\":\"algo-3\"}]},\"topology\":[{\"capacityUnitId\":\"cu-1\",\"hostName\":\"algo-2\"},{\"capacityUnitId\":\"cu-1\",\"hostName\":\"algo-3\"}],\"user_entry_point\":\"main.py\"}",
            ),
            ("SM_USER_ARGS", "[\"--batch_size\",\"64\"]"),
            ("SM_USER_ENTRY_POINT", "main.py"),
        ],
    };

    const SCENARIO_MINIMAL: Scenario = Scenario {
        hyperparameters: "{}",
        input_data_config: "{}",
        resource_config: "{\"current_host\": \"algo-1\", \"hosts\": [\"algo-1\"]}",
        env: &[],
        expected: &[
            ("CURRENT_HOST", "algo-1"),
            ("SAGEMAKER_JOB_NAME", ""),
            ("SAGEMAKER_REGION", ""),
            ("SM_CHANNELS", "[]"),
            ("SM_CURRENT_HOST", "algo-1"),
            ("SM_CURRENT_INSTANCE_GROUP", "homogeneousCluster"),
            ("SM_CURRENT_INSTANCE_GROUP_HOSTS", "[]"),
            ("SM_CURRENT_INSTANCE_TYPE", "local"),
            ("SM_DISTRIBUTION_INSTANCE_GROUPS", "[]"),
            ("SM_FRAMEWORK_MODULE", ""),
            ("SM_FRAMEWORK_PARAMS", "{}"),
            ("SM_HOSTS", "[\"algo-1\"]"),
            ("SM_HPS", "{}"),
            ("SM_INPUT_CONFIG_DIR", "/tmp/sm/opt/ml/input/config"),
            ("SM_INPUT_DATA_CONFIG", "{}"),
            ("SM_INPUT_DIR", "/tmp/sm/opt/ml/input"),
            ("SM_INSTANCE_GROUPS", "[]"),
            ("SM_INSTANCE_GROUPS_DICT", "{}"),
            ("SM_IS_HETERO", "false"),
            ("SM_LOG_LEVEL", "20"),
            ("SM_MODEL_DIR", "/tmp/sm/opt/ml/model"),
            ("SM_MODULE_DIR", "/tmp/sm/opt/ml/code"),
            ("SM_MODULE_NAME", "None"),
            ("SM_NETWORK_INTERFACE_NAME", "eth0"),
            ("SM_NUM_CPUS", "8"),
            ("SM_NUM_GPUS", "1"),
            ("SM_NUM_NEURONS", "0"),
            ("SM_OUTPUT_DATA_DIR", "/tmp/sm/opt/ml/output/data"),
            ("SM_OUTPUT_DIR", "/tmp/sm/opt/ml/output"),
            (
                "SM_OUTPUT_INTERMEDIATE_DIR",
                "/tmp/sm/opt/ml/output/intermediate",
            ),
            (
                "SM_RESOURCE_CONFIG",
                "{\"current_host\":\"algo-1\",\"hosts\":[\"algo-1\"]}",
            ),
            (
                "SM_TRAINING_ENV",
                "{\"additional_framework_parameters\":{},\"channel_input_dirs\":{},\"current_host\":\"algo-1\",\"current_instance_group\":\"homogeneousCluster\",\"current_instance_group_hosts\":[],\"current_instance_type\":\"local\",\"distribution_hosts\":[\"algo-1\"],\"distribution_instance_groups\":[],\"framework_module\":null,\"hosts\":[\"algo-1\"],\"hyperparameters\":{},\"input_config_dir\":\"/tmp/sm/opt/ml/input/config\",\"input_data_config\":{},\"input_dir\":\"/tmp/sm/opt/ml/input\",\"instance_groups\":[],\"instance_groups_dict\":{},\"is_hetero\":false,\"is_master\":true,\"is_modelparallel_enabled\":null,\"is_smddpmprun_installed\":false,\"is_smddprun_installed\":false,\"job_name\":\"job-1\",\"log_level\":20,\"master_hostname\":\"algo-1\",\"model_dir\":\"/tmp/sm/opt/ml/model\",\"module_dir\":\"/tmp/sm/opt/ml/code\",\"module_name\":\"None\",\"network_interface_name\":\"eth0\",\"num_cpus\":8,\"num_gpus\":1,\"num_neurons\":0,\"output_data_dir\":\"/tmp/sm/opt/ml/output/data\",\"output_dir\":\"/tmp/sm/opt/ml/output\",\"output_intermediate_dir\":\"/tmp/sm/opt/ml/output/intermediate\",\"resource_config\":{\"current_host\":\"algo-1\",\"hosts\":[\"algo-1\"]},\"topology\":[],\"user_entry_point\":null}",
            ),
            ("SM_USER_ARGS", "[]"),
            ("SM_USER_ENTRY_POINT", ""),
        ],
    };
}
