"""What a person may do with their own runtime connections: see, reconnect, disconnect, delete.

`views`: what the cards show of a connection (plain data; it imports no storage).
`service`: the one way surfaces (bots/, admin/) read and change connections; each call checks
that the connection is the person's own, makes the change once, and audits it.
`settle`: revocation at the provider and audit events, after the answer.
"""
