package job

import (
	"encoding/json"
	"time"
)

// What a worker reports about the task it holds. The worker protocol
// carries these from a remote worker to the server, and the store records
// them; they are the domain's words, so neither owns them.

// Progress is what a heartbeat reports.
type Progress struct {
	Progress float64 // 0..1 of this task
	Speed    float64 // x realtime
}

// Result is what a finished task hands back. JobPatch fields, when set, are
// written onto the job in the same transaction.
type Result struct {
	Data     json.RawMessage
	Commands [][]string
	Source   *Source
	Plan     json.RawMessage
	Outputs  json.RawMessage
	// Expand, when set, changes the job's remaining tasks (a probe that
	// planned a chunked encode). Only the server makes one.
	Expand *Expansion
}

// Expansion replaces a job's pending task of kind Replace by Tasks. Tasks
// may depend on the task that reports the expansion, on each other, and
// (InheritDeps) on what the replaced one depended on; the tasks that
// waited for the replaced one wait instead for every one of Tasks that no
// other of them waits for (Ends): an audio and an encode side by side,
// or a stitch after chunks.
type Expansion struct {
	Replace Kind
	Tasks   []Task
}

// Ends are the IDs of x's tasks that no other of its tasks depends on, in
// order.
func (x Expansion) Ends() []string {
	waited := map[string]bool{}
	for _, t := range x.Tasks {
		for _, d := range t.DependsOn {
			waited[d] = true
		}
	}
	var ends []string
	for _, t := range x.Tasks {
		if !waited[t.ID] {
			ends = append(ends, t.ID)
		}
	}
	return ends
}

// InheritDeps, among an expansion's task's DependsOn, stands for the
// tasks the replaced one depended on.
const InheritDeps = "@replaced"

// Failure is a failed attempt.
type Failure struct {
	Message   string // for users
	Code      string
	Permanent bool
	Commands  [][]string
	Backoff   time.Duration // base delay before the next attempt
}
