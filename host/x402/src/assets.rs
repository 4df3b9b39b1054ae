//! The tokens a tenant can pay in: USDC on Base and Base Sepolia built in,
//! others from the tenant's `[x402.assets]`.

use tiergate_core::governance::{TenantConfig, X402Asset, evm_chain_id};

/// A token on one network, with what signing for it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asset {
    /// CAIP-2 network.
    pub network: String,
    /// Its EVM chain id.
    pub chain_id: u64,
    /// The token contract, lower case.
    pub address: String,
    /// Its code in amounts (`USDC`).
    pub symbol: String,
    /// Decimal places of one token in atomic units.
    pub decimals: u32,
    /// EIP-712 domain name.
    pub eip712_name: String,
    /// EIP-712 domain version.
    pub eip712_version: String,
}

/// USDC on Base (`eip155:8453`) and on Base Sepolia (`eip155:84532`), as
/// Circle deploys them.
const BUILT_IN: [(&str, u64, &str, &str); 2] = [
    (
        "eip155:8453",
        8453,
        "0x833589fcd6edb6e08f4c7c32d4f71b54bda02913",
        "USD Coin",
    ),
    (
        "eip155:84532",
        84532,
        "0x036cbd53842c5426634e7929541ec2318f3dcf7e",
        "USDC",
    ),
];

/// The built-in assets.
pub fn built_in() -> Vec<Asset> {
    BUILT_IN
        .iter()
        .map(|(network, chain_id, address, name)| Asset {
            network: (*network).into(),
            chain_id: *chain_id,
            address: (*address).into(),
            symbol: "USDC".into(),
            decimals: 6,
            eip712_name: (*name).into(),
            eip712_version: "2".into(),
        })
        .collect()
}

fn from_config(asset: &X402Asset) -> Option<Asset> {
    Some(Asset {
        network: asset.network.clone(),
        chain_id: evm_chain_id(&asset.network)?,
        address: asset.address.to_ascii_lowercase(),
        symbol: asset.symbol.clone(),
        decimals: asset.decimals,
        eip712_name: asset.eip712_name.clone(),
        eip712_version: asset.eip712_version.clone(),
    })
}

/// The asset at `address` on `network` for `config`'s tenant: its own
/// entry first, then the built-in ones.
pub fn find(config: &TenantConfig, network: &str, address: &str) -> Option<Asset> {
    let address = address.to_ascii_lowercase();
    let own = config
        .x402
        .iter()
        .flat_map(|x| &x.assets)
        .filter_map(from_config);
    own.chain(built_in())
        .find(|a| a.network == network && a.address == address)
}
