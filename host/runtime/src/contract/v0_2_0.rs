//! Contract `tiergate:policy@0.2.0`: the configuration is handed once per
//! instance to `configure`, before `classify`.

use wasmtime::Store;
use wasmtime::component::{Component, ComponentExportIndex, Instance, TypedFunc};

use super::{Answer, Described, func, read_answer};

wasmtime::component::bindgen!({
    path: "../../wit/v0.2.0",
    world: "tier-policy",
    imports: { default: trappable },
    ownership: Borrowing { duplicate_if_necessary: true },
});

super::shared_by_every_version!();

/// The policy interface's exports, found once per compiled policy and
/// called by index, as for [`v0_1_0`](super::v0_1_0).
pub(crate) struct PolicyExports {
    info: ComponentExportIndex,
    configure: ComponentExportIndex,
    classify: ComponentExportIndex,
}

type InfoFunc = TypedFunc<(), (types::PolicyInfo,)>;
type ConfigureFunc<'a> = TypedFunc<(&'a str,), (Result<(), String>,)>;
type ClassifyFunc<'a> =
    TypedFunc<(&'a types::Transaction<'a>,), (Result<types::Decision, String>,)>;

impl PolicyExports {
    /// `None` when an export is missing.
    pub(crate) fn find(component: &Component) -> Option<Self> {
        let [info, configure, classify] = super::export_indices(
            component,
            "tiergate:policy/policy@0.2.0",
            ["info", "configure", "classify"],
        )?;
        Some(PolicyExports {
            info,
            configure,
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
        let (info, configure, classify) = (
            export(self.info)?,
            export(self.configure)?,
            export(self.classify)?,
        );
        let differs = |e: wasmtime::Error| format!("{e:#}");
        if let Err(e) = info.typed::<(), (types::PolicyInfo,)>(&*store) {
            return Some(("info", differs(e)));
        }
        if let Err(e) = configure.typed::<(&str,), (Result<(), String>,)>(&*store) {
            return Some(("configure", differs(e)));
        }
        if let Err(e) = classify
            .typed::<(&types::Transaction<'_>,), (Result<types::Decision, String>,)>(&*store)
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

    /// Calls `configure`, during which the context refuses every question.
    pub(crate) fn call_configure(
        &self,
        store: &mut Store<Sandbox>,
        instance: &Instance,
        config: &str,
    ) -> wasmtime::Result<Result<(), String>> {
        let configure: ConfigureFunc<'_> = func(store, instance, self.configure)?;
        store.data_mut().configuring = true;
        let result = configure.call(&mut *store, (config,));
        store.data_mut().configuring = false;
        Ok(result?.0)
    }

    /// Calls `classify` and reads its answer out of the sandbox.
    pub(crate) fn call_classify(
        &self,
        store: &mut Store<Sandbox>,
        instance: &Instance,
        tx: &WitTransaction,
    ) -> wasmtime::Result<Answer> {
        let classify: ClassifyFunc<'_> = func(store, instance, self.classify)?;
        let (answer,) = classify.call(&mut *store, (&transaction(tx),))?;
        Ok(read_answer(lifted(answer)))
    }
}
