package lab

import (
	"encoding/json"
	"slices"
	"testing"
)

// An answer of etcd 3.4.23's v3 gateway to POST /v3/cluster/member/add
// with {"peerURLs": [...], "isLearner": true}, as recorded (the IDs are
// uint64s as JSON strings; the new member has no name yet).
const etcdMemberAddAnswer = `{"header":{"cluster_id":"2037210783374497686","member_id":"13195394291058371180","raft_term":"2"},` +
	`"member":{"ID":"4333227934706161269","peerURLs":["http://192.0.2.12:2380"],"isLearner":true},` +
	`"members":[{"ID":"4333227934706161269","peerURLs":["http://192.0.2.12:2380"],"isLearner":true},` +
	`{"ID":"13195394291058371180","name":"n1","peerURLs":["http://192.0.2.11:2380"],"clientURLs":["http://192.0.2.11:2379"]}]}`

func TestEtcdInitialCluster(t *testing.T) {
	var a etcdMemberAdd
	if err := json.Unmarshal([]byte(etcdMemberAddAnswer), &a); err != nil {
		t.Fatal(err)
	}
	got := a.initialCluster("n2")
	want := []string{"n2=http://192.0.2.12:2380", "n1=http://192.0.2.11:2380"}
	if !slices.Equal(got, want) {
		t.Errorf("initialCluster = %q, want %q", got, want)
	}
	if a.Member.ID != "4333227934706161269" || !a.Member.IsLearner {
		t.Errorf("member = %+v, want the learner 4333227934706161269", a.Member)
	}
}
