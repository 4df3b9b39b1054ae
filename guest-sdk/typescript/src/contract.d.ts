// The contract's imports as componentize-js binds them (tiergate:policy@0.1.0).
declare module "tiergate:policy/context@0.1.0" {
  export type ActivityFilter =
    | { tag: "all" }
    | { tag: "category"; val: string }
    | { tag: "tier"; val: "autonomous" | "supervised" | "collaborative" | "prohibited" };
  export function agentActivity(windowMs: bigint, filter: ActivityFilter): { count: bigint; total: string };
  export function recipient(): { firstSeenMs?: bigint; paymentCount: bigint };
}
