// Command image writes a container image of a root file system folder as a
// `docker save`-style archive (which `docker load`, `podman load` and
// `ctr images import` read), without a Docker engine or a registry. One
// layer; every file owned by root except the folders named in -owned, which
// belong to the image's user (the only places it can write).
//
//	go run . -rootfs DIR -tag herd:v1 -o herd.tar -user 10001:10001 -owned data,tmp \
//	    -entrypoint /usr/local/bin/herd -cmd serve -env HERD_DATA=/data -port 8080 -volume /data
package main

import (
	"archive/tar"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	var (
		rootfs, tag, out, user, entrypoint, workdir, created string
		cmd, env, owned, ports, volumes, labels              list
	)
	flag.StringVar(&rootfs, "rootfs", "", "the root file system folder")
	flag.StringVar(&tag, "tag", "", "image name and tag, e.g. herd:v1")
	flag.StringVar(&out, "o", "", "archive to write")
	flag.StringVar(&user, "user", "", "uid:gid the image runs as")
	flag.StringVar(&entrypoint, "entrypoint", "", "entrypoint program")
	flag.StringVar(&workdir, "workdir", "", "working directory")
	flag.StringVar(&created, "created", "", "creation time (RFC 3339; default the epoch, for reproducible images)")
	flag.Var(&cmd, "cmd", "default argument (repeat)")
	flag.Var(&env, "env", "NAME=VALUE (repeat)")
	flag.Var(&owned, "owned", "folder (relative to the root) owned by the image's user (repeat)")
	flag.Var(&ports, "port", "exposed TCP port (repeat)")
	flag.Var(&volumes, "volume", "volume path (repeat)")
	flag.Var(&labels, "label", "KEY=VALUE (repeat)")
	flag.Parse()
	if rootfs == "" || tag == "" || out == "" {
		log.Fatal("usage: image -rootfs DIR -tag NAME:TAG -o FILE [options]")
	}
	uid, gid := 0, 0
	if user != "" {
		u, g, _ := strings.Cut(user, ":")
		var err1, err2 error
		uid, err1 = strconv.Atoi(u)
		gid, err2 = strconv.Atoi(g)
		if err1 != nil || err2 != nil {
			log.Fatalf("-user %q: want numeric uid:gid", user)
		}
	}
	layerFile, err := os.CreateTemp(filepath.Dir(out), ".layer-*.tar")
	if err != nil {
		log.Fatal(err)
	}
	defer os.Remove(layerFile.Name())
	if err := writeLayer(layerFile, rootfs, owned, uid, gid); err != nil {
		log.Fatal(err)
	}
	if err := layerFile.Close(); err != nil {
		log.Fatal(err)
	}
	layer, err := tarball.LayerFromFile(layerFile.Name())
	if err != nil {
		log.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		log.Fatal(err)
	}
	when := time.Unix(0, 0).UTC()
	if created != "" {
		if when, err = time.Parse(time.RFC3339, created); err != nil {
			log.Fatalf("-created: %v", err)
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		log.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS, cf.Created = "amd64", "linux", v1.Time{Time: when}
	cf.Config.User = user
	cf.Config.WorkingDir = workdir
	cf.Config.Env = append([]string{"PATH=/usr/local/bin:/usr/bin:/bin"}, env...)
	if entrypoint != "" {
		cf.Config.Entrypoint = []string{entrypoint}
	}
	cf.Config.Cmd = cmd
	cf.Config.ExposedPorts = map[string]struct{}{}
	for _, p := range ports {
		cf.Config.ExposedPorts[p+"/tcp"] = struct{}{}
	}
	cf.Config.Volumes = map[string]struct{}{}
	for _, v := range volumes {
		cf.Config.Volumes[v] = struct{}{}
	}
	cf.Config.Labels = map[string]string{}
	for _, l := range labels {
		k, v, _ := strings.Cut(l, "=")
		cf.Config.Labels[k] = v
	}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		log.Fatal(err)
	}
	ref, err := name.NewTag(tag, name.WithDefaultRegistry(""))
	if err != nil {
		log.Fatalf("-tag: %v", err)
	}
	tmp := out + ".part"
	if err := tarball.WriteToFile(tmp, ref, img); err != nil {
		log.Fatal(err)
	}
	if err := os.Rename(tmp, out); err != nil {
		log.Fatal(err)
	}
	st, _ := os.Stat(out)
	fmt.Printf("wrote %s (%s, %d MB)\n", out, tag, st.Size()>>20)
}

// writeLayer writes rootfs as a tar: sorted, times zeroed, owned by root
// except the owned folders (and what is in them).
func writeLayer(w io.Writer, root string, owned []string, uid, gid int) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		rel = filepath.ToSlash(rel)
		info, err := os.Lstat(p)
		if err != nil {
			return err
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		hdr.Name = rel
		if d.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
		if slices.ContainsFunc(owned, func(o string) bool { o = strings.Trim(o, "/"); return rel == o || strings.HasPrefix(rel, o+"/") }) {
			hdr.Uid, hdr.Gid = uid, gid
		}
		hdr.ModTime, hdr.AccessTime, hdr.ChangeTime = time.Unix(0, 0), time.Time{}, time.Time{}
		hdr.Format = tar.FormatPAX
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			if _, err := io.Copy(tw, f); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return tw.Close()
}
