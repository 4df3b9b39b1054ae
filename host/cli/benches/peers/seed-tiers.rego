# The seed-tiers policy's default rules as a Rego module, for the peer
# comparison bench (../peers.rs).
#
# input: amount (number), category, recipient_trust ("unknown", "known" or
# "verified"), jurisdiction (absent when unknown), and recent: the agent's
# recent payment counts per tier. `tier` is the answer.
package tiergate.seed_tiers

import rego.v1

prohibited_categories := {"gambling", "unverified_agents", "sanctioned_jurisdictions"}

sanctioned_jurisdictions := {"KP", "IR", "SY"}

autonomous_categories := {"api_calls", "embeddings", "search"}

# Categories carry upward: an autonomous category may also be supervised.
supervised_categories := autonomous_categories | {"compute", "data_access", "saas_tools"}

prohibited if input.category in prohibited_categories

prohibited if input.jurisdiction in sanctioned_jurisdictions

prohibited if input.recipient_trust == "unknown"

autonomous if {
	input.amount <= 1.00
	input.category in autonomous_categories
	input.recipient_trust == "verified"
	input.recent.autonomous_1h < 1000
}

supervised if {
	input.amount <= 50.00
	input.category in supervised_categories
	input.recipient_trust in {"known", "verified"}
	input.recent.supervised_1h < 20
}

collaborative if {
	input.amount <= 5000.00
	input.recent.collaborative_24h < 5
}

tier := "prohibited" if {
	prohibited
} else := "autonomous" if {
	autonomous
} else := "supervised" if {
	supervised
} else := "collaborative" if {
	collaborative
} else := "prohibited"
