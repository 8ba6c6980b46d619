"""What a person may do with their own runtime connections: see, disconnect, delete.

Service functions between the Teams router (bots/) and the store (storage/): each checks that the
connection is the person's own, makes the change once, and audits it.
"""
