//! Contract `tiergate:policy@0.1.0`: the configuration is handed to every
//! `classify` call.

use wasmtime::Store;
use wasmtime::component::{Component, ComponentExportIndex, Instance, TypedFunc};

use super::{Answer, Described, func, read_answer};

wasmtime::component::bindgen!({
    path: "../../wit/v0.1.0",
    world: "tier-policy",
    imports: { default: trappable },
    ownership: Borrowing { duplicate_if_necessary: true },
});

super::shared_by_every_version!();

/// The policy interface's exports, found once per compiled policy and
/// called by index: the generated `load` looks up and type-checks all three
/// on every instance, which was about a twentieth of a fresh decision.
pub(crate) struct PolicyExports {
    info: ComponentExportIndex,
    check_config: ComponentExportIndex,
    classify: ComponentExportIndex,
}

type InfoFunc = TypedFunc<(), (types::PolicyInfo,)>;
type CheckConfigFunc<'a> = TypedFunc<(&'a str,), (Result<(), String>,)>;
type ClassifyFunc<'a> =
    TypedFunc<(&'a str, &'a types::Transaction<'a>), (Result<types::Decision, String>,)>;

impl PolicyExports {
    /// `None` when an export is missing.
    pub(crate) fn find(component: &Component) -> Option<Self> {
        let [info, check_config, classify] = super::export_indices(
            component,
            "tiergate:policy/policy@0.1.0",
            ["info", "check-config", "classify"],
        )?;
        Some(PolicyExports {
            info,
            check_config,
            classify,
        })
    }

    /// The first export whose type is not the contract's, and how it differs.
    pub(crate) fn mistyped(
        &self,
        store: &mut Store<Sandbox>,
        instance: &Instance,
    ) -> Option<(&'static str, String)> {
        let mut export = |index| instance.get_func(&mut *store, index);
        let (info, check, classify) = (
            export(self.info)?,
            export(self.check_config)?,
            export(self.classify)?,
        );
        let differs = |e: wasmtime::Error| format!("{e:#}");
        if let Err(e) = info.typed::<(), (types::PolicyInfo,)>(&*store) {
            return Some(("info", differs(e)));
        }
        if let Err(e) = check.typed::<(&str,), (Result<(), String>,)>(&*store) {
            return Some(("check-config", differs(e)));
        }
        if let Err(e) = classify
            .typed::<(&str, &types::Transaction<'_>), (Result<types::Decision, String>,)>(&*store)
        {
            return Some(("classify", differs(e)));
        }
        None
    }

    pub(crate) fn call_info(
        &self,
        store: &mut Store<Sandbox>,
        instance: &Instance,
    ) -> wasmtime::Result<Described> {
        let info: InfoFunc = func(store, instance, self.info)?;
        let (answer,) = info.call(&mut *store, ())?;
        Ok(described(answer))
    }

    pub(crate) fn call_check_config(
        &self,
        store: &mut Store<Sandbox>,
        instance: &Instance,
        config: &str,
    ) -> wasmtime::Result<Result<(), String>> {
        let check: CheckConfigFunc<'_> = func(store, instance, self.check_config)?;
        let (answer,) = check.call(&mut *store, (config,))?;
        Ok(answer)
    }

    /// Calls `classify` and reads its answer out of the sandbox.
    pub(crate) fn call_classify(
        &self,
        store: &mut Store<Sandbox>,
        instance: &Instance,
        config: &str,
        tx: &WitTransaction,
    ) -> wasmtime::Result<Answer> {
        let classify: ClassifyFunc<'_> = func(store, instance, self.classify)?;
        let (answer,) = classify.call(&mut *store, (config, &transaction(tx)))?;
        Ok(read_answer(lifted(answer)))
    }
}
