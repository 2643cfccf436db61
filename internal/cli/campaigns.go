package cli

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/herdhq/herd/internal/client"
	"github.com/herdhq/herd/internal/jobview"
	"github.com/herdhq/herd/internal/label"
	"github.com/herdhq/herd/internal/store"
)

func (e *env) campaignCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "campaign",
		Short: "Re-encode what older versions of a profile made, replacing each output once its new one is verified",
		Long: `A campaign finds every published output (an asset made with a profile) whose profile
version is older than the current one, and queues a new job for each with the current version,
for the same publishers and with the same labels. Each output is replaced only when its new job
has succeeded, verified: the old one plays until then, and its files stay for herd serve's
--keep-replaced (24h) so a player in the middle of them is not cut off. A campaign survives
restarts; pause, resume and cancel steer it.`,
	}
	cmd.AddCommand(e.campaignCreateCmd(), e.campaignListCmd(), e.campaignShowCmd(),
		e.campaignActionCmd("pause", "Stop a campaign queueing jobs (those queued run on)"),
		e.campaignActionCmd("resume", "Let a paused campaign queue jobs again"),
		e.campaignActionCmd("cancel", "End a campaign and cancel its jobs that have not finished"))
	return cmd
}

func (e *env) campaignCreateCmd() *cobra.Command {
	var req jobview.CampaignRequest
	var labels []string
	cmd := &cobra.Command{
		Use:   "create --profile P",
		Short: "Make a campaign: print its id (with --dry-run, list what it would redo)",
		Args:  cobra.NoArgs,
	}
	out := addOutput(cmd, "table")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		var err error
		if req.Labels, err = label.Parse(strings.Join(labels, ",")); err != nil {
			return err
		}
		c, err := e.client(cmd)
		if err != nil {
			return err
		}
		v, err := c.CreateCampaign(cmd.Context(), req)
		if err != nil {
			return err
		}
		if !req.DryRun && (*out == "table" || *out == "wide") {
			fmt.Fprintln(e.stdout, v.ID)
			return nil
		}
		return e.render(*out, v, func(tw io.Writer, _ bool) {
			fmt.Fprintf(tw, "would redo %d outputs of %s made with versions %d to %d, with version %d:\n",
				len(v.Items), v.Profile, v.FromVersion, v.ToVersion-1, v.ToVersion)
			campaignItems(tw, v.Items)
		})
	}
	f := cmd.Flags()
	f.StringVar(&req.Profile, "profile", "", "the profile whose older outputs to redo (required)")
	f.IntVar(&req.FromVersion, "from-version", 0, "redo only what this version and the later ones before the current made (default 1: every older version)")
	f.StringVar(&req.Library, "library", "", "only jobs delivered to this publisher, or made from this watch folder (its path)")
	f.StringVar(&req.Query, "query", "", "only sources whose name contains this, in any case")
	f.StringSliceVarP(&labels, "label", "l", nil, "only jobs with this label key=value (repeatable, or comma-separated)")
	f.StringVar(&req.Window, "window", "", "queue jobs only inside this daily window of the server's local time, e.g. 01:00-07:00")
	f.IntVar(&req.MaxRunning, "max-running", 0, "most of the campaign's jobs queued or running at once (default 2)")
	f.BoolVar(&req.DryRun, "dry-run", false, "list what it would redo, and make nothing")
	_ = cmd.MarkFlagRequired("profile")
	return cmd
}

func campaignItems(tw io.Writer, items []store.CampaignItem) {
	fmt.Fprintln(tw, "JOB\tSOURCE\tSTATE\tNEW JOB\tNOTE")
	for _, it := range items {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", it.JobID, it.Name, it.State, dash(it.NewJobID), it.Note)
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func campaignLine(c store.Campaign) string {
	n := c.Counts
	return fmt.Sprintf("%d/%d replaced, %d running, %d pending, %d failed, %d skipped", n.Succeeded, n.Total, n.Running, n.Pending, n.Failed, n.Skipped)
}

func (e *env) campaignListCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "list", Short: "List campaigns, newest first", Args: cobra.NoArgs}
	return e.showing(cmd, func(cmd *cobra.Command, c *client.Client, _ []string) (view, error) {
		cs, err := c.Campaigns(cmd.Context())
		return view{map[string]any{"campaigns": cs}, func(tw io.Writer, _ bool) {
			fmt.Fprintln(tw, "ID\tPROFILE\tVERSIONS\tSTATE\tPROGRESS\tCREATED")
			for _, c := range cs {
				fmt.Fprintf(tw, "%s\t%s\t%d-%d → %d\t%s\t%s\t%s ago\n", c.ID, c.Profile, c.FromVersion, c.ToVersion-1, c.ToVersion, c.State, campaignLine(c), age(c.CreatedAt))
			}
		}}, err
	})
}

func (e *env) campaignShowCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "show ID", Short: "Show a campaign and each output it redoes", Args: cobra.ExactArgs(1)}
	return e.showing(cmd, func(cmd *cobra.Command, c *client.Client, args []string) (view, error) {
		v, err := c.Campaign(cmd.Context(), args[0])
		return view{v, func(tw io.Writer, _ bool) {
			campaignHeader(tw, v)
			campaignItems(tw, v.Items)
		}}, err
	})
}

func campaignHeader(w io.Writer, v jobview.CampaignView) {
	fmt.Fprintf(w, "%s  %s  profile %s, versions %d-%d → %d, at most %d at a time", v.ID, v.State, v.Profile, v.FromVersion, v.ToVersion-1, v.ToVersion, v.MaxRunning)
	if v.Window != "" {
		fmt.Fprintf(w, ", only %s", v.Window)
	}
	fmt.Fprintf(w, "\n%s\n", campaignLine(v.Campaign))
}

func (e *env) campaignActionCmd(action, short string) *cobra.Command {
	cmd := &cobra.Command{Use: action + " ID", Short: short, Args: cobra.ExactArgs(1)}
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := e.client(cmd)
		if err != nil {
			return err
		}
		v, err := c.CampaignAction(cmd.Context(), args[0], action)
		if err != nil {
			return err
		}
		if v.ID == "" {
			return errors.New("the server answered without the campaign")
		}
		campaignHeader(e.stdout, v)
		return nil
	}
	return cmd
}
