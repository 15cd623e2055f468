"""The node's subscription methods, named once for the server that serves them and for ``rpc_methods``,
which lists them (before: ``rpc.py`` imported them from ``server.py`` inside a function, a cycle)."""

# subscribe method -> (notification method, kind); unsubscribe methods are listed apart
SUBSCRIBE = {
    "chain_subscribeNewHeads": ("chain_newHead", "heads"),
    "chain_subscribeNewHead": ("chain_newHead", "heads"),
    "subscribe_newHead": ("chain_newHead", "heads"),
    "chain_subscribeAllHeads": ("chain_allHead", "heads"),
    "chain_subscribeFinalizedHeads": ("chain_finalizedHead", "heads"),
    "chain_subscribeFinalisedHeads": ("chain_finalizedHead", "heads"),
    "state_subscribeStorage": ("state_storage", "storage"),
    "state_subscribeRuntimeVersion": ("state_runtimeVersion", "version"),
    "chain_subscribeRuntimeVersion": ("state_runtimeVersion", "version"),
    "author_submitAndWatchExtrinsic": ("author_extrinsicUpdate", "extrinsic"),
}
UNSUBSCRIBE = {
    "chain_unsubscribeNewHeads", "chain_unsubscribeNewHead", "unsubscribe_newHead", "chain_unsubscribeAllHeads",
    "chain_unsubscribeFinalizedHeads", "chain_unsubscribeFinalisedHeads", "state_unsubscribeStorage",
    "state_unsubscribeRuntimeVersion", "chain_unsubscribeRuntimeVersion", "author_unwatchExtrinsic",
}
SUBSCRIPTION_METHODS = set(SUBSCRIBE) | UNSUBSCRIBE
