package server

import "errors"

var (
	// ErrNoLeader means no leader was known within the wait; a write
	// rejected with it was not applied.
	ErrNoLeader = errors.New("server: no leader (the cluster may have lost quorum)")
	// ErrLeaderLost means the leader went away while a write was pending:
	// the write may or may not be applied.
	ErrLeaderLost = errors.New("server: leader lost while the request was pending; its outcome is unknown")
	// ErrTimeout means a write was not applied in time: it may or may not
	// be applied later.
	ErrTimeout = errors.New("server: request timed out; its outcome is unknown")
	// ErrReadTimeout means a linearizable read could not be confirmed in time.
	ErrReadTimeout = errors.New("server: linearizable read timed out")
	// ErrStopped means the member is shutting down.
	ErrStopped = errors.New("server: stopped")
	// ErrMemberExists is returned when adding an id or URL already in use.
	ErrMemberExists = errors.New("server: member already exists")
	// ErrPeerURLExists is returned when adding a member with a peer URL
	// another member has.
	ErrPeerURLExists = errors.New("server: peer URL already in use")
	// ErrMemberNotFound is returned when removing an unknown member.
	ErrMemberNotFound = errors.New("server: member not found")
	// ErrNotEnoughStartedMembers is returned for a membership change
	// after which the started voting members would be fewer than a quorum
	// (an addition of a voter, a removal), or no voting member would be
	// left: raft could not make progress afterwards.
	ErrNotEnoughStartedMembers = errors.New("server: re-configuration failed due to not enough started members")
	// ErrUnhealthy is returned for a membership change after which the
	// voting members this member is connected to would be fewer than a
	// quorum.
	ErrUnhealthy = errors.New("server: unhealthy cluster: too few connected voting members for a quorum after the change")
	// ErrIDRemoved is returned when adding an id that was removed before:
	// raft never reuses ids.
	ErrIDRemoved = errors.New("server: member id was removed earlier and cannot be reused")
	// ErrNoMemberID is returned when member add has no id left to give:
	// a member once had the largest one.
	ErrNoMemberID = errors.New("server: no member id is left after the largest one, which a member once had; add members with an explicit id (POST /<id>)")
	// ErrBadMember is returned for an invalid id or peer URL.
	ErrBadMember = errors.New("server: invalid member")
	// ErrKeyNotFound is returned for reads and deletes of absent keys.
	ErrKeyNotFound = errors.New("server: key not found")
	// ErrRemoved is reported when this member was removed from the cluster.
	ErrRemoved = errors.New("server: this member was removed from the cluster")
)
