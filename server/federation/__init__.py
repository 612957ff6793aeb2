"""Federation between sites: identities, peers and scopes, leases, site links."""
