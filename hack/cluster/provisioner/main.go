// local-provisioner: dynamic provisioning of node-local volumes for the single-node dev
// cluster. It runs on the node itself (not in a pod), so it makes and removes the
// directories directly instead of through helper pods.
//
// Steps, per claim of a StorageClass whose provisioner is dbmigrate.dev/local:
//  1. the scheduler picks the node (the class binds WaitForFirstConsumer);
//  2. Provision makes <root>/<pv-name> (mode 0777, so any pod uid can use it; fsGroup is
//     applied by the kubelet's local volume plugin) and returns a `local` PV pinned to the node;
//  3. Delete (reclaimPolicy Delete, after the claim is gone) removes the directory.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	"sigs.k8s.io/sig-storage-lib-external-provisioner/v13/controller"
)

const provisionerName = "dbmigrate.dev/local"

type localProvisioner struct {
	root string // every volume is a directory directly under root
	node string // the only node this provisioner serves
}

func (p *localProvisioner) dir(pvName string) (string, error) {
	if pvName == "" || strings.ContainsAny(pvName, "/\\") || pvName == "." || pvName == ".." {
		return "", fmt.Errorf("refusing volume name %q", pvName)
	}
	return filepath.Join(p.root, pvName), nil
}

func (p *localProvisioner) Provision(ctx context.Context, opts controller.ProvisionOptions) (*v1.PersistentVolume, controller.ProvisioningState, error) {
	if opts.SelectedNodeName != "" && opts.SelectedNodeName != p.node {
		return nil, controller.ProvisioningFinished, &controller.IgnoredError{Reason: "claim is for node " + opts.SelectedNodeName}
	}
	if opts.PVC.Spec.VolumeMode != nil && *opts.PVC.Spec.VolumeMode == v1.PersistentVolumeBlock {
		return nil, controller.ProvisioningFinished, errors.New("block volumes are not supported")
	}
	path, err := p.dir(opts.PVName)
	if err != nil {
		return nil, controller.ProvisioningFinished, err
	}
	if err := os.MkdirAll(path, 0o777); err != nil {
		return nil, controller.ProvisioningInBackground, err
	}
	if err := os.Chmod(path, 0o777); err != nil { // MkdirAll is subject to the umask
		return nil, controller.ProvisioningInBackground, err
	}
	reclaim := v1.PersistentVolumeReclaimDelete
	if opts.StorageClass.ReclaimPolicy != nil {
		reclaim = *opts.StorageClass.ReclaimPolicy
	}
	fs := v1.PersistentVolumeFilesystem
	pv := &v1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{
			Name:        opts.PVName,
			Annotations: map[string]string{"dbmigrate.dev/local-path": path},
		},
		Spec: v1.PersistentVolumeSpec{
			PersistentVolumeReclaimPolicy: reclaim,
			AccessModes:                   opts.PVC.Spec.AccessModes,
			VolumeMode:                    &fs,
			MountOptions:                  opts.StorageClass.MountOptions,
			Capacity:                      v1.ResourceList{v1.ResourceStorage: opts.PVC.Spec.Resources.Requests[v1.ResourceStorage]},
			PersistentVolumeSource:        v1.PersistentVolumeSource{Local: &v1.LocalVolumeSource{Path: path}},
			NodeAffinity: &v1.VolumeNodeAffinity{Required: &v1.NodeSelector{NodeSelectorTerms: []v1.NodeSelectorTerm{{
				MatchExpressions: []v1.NodeSelectorRequirement{{
					Key: "kubernetes.io/hostname", Operator: v1.NodeSelectorOpIn, Values: []string{p.node},
				}},
			}}}},
		},
	}
	klog.InfoS("provisioned", "pv", opts.PVName, "claim", klog.KObj(opts.PVC), "path", path)
	return pv, controller.ProvisioningFinished, nil
}

func (p *localProvisioner) Delete(ctx context.Context, pv *v1.PersistentVolume) error {
	if pv.Spec.Local == nil {
		return &controller.IgnoredError{Reason: "not a local volume"}
	}
	path, err := p.dir(pv.Name)
	if err != nil {
		return err
	}
	if filepath.Clean(pv.Spec.Local.Path) != path { // only ever delete what we made
		return &controller.IgnoredError{Reason: "path not under our root"}
	}
	if err := os.RemoveAll(path); err != nil {
		return err
	}
	klog.InfoS("deleted", "pv", pv.Name, "path", path)
	return nil
}

func main() {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig file")
	root := flag.String("root", "", "directory holding the volumes")
	node := flag.String("node", "", "this node's name")
	klog.InitFlags(nil)
	flag.Parse()
	if *root == "" || *node == "" {
		klog.Fatal("--root and --node are required")
	}
	if err := os.MkdirAll(*root, 0o755); err != nil {
		klog.Fatal(err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		klog.Fatal(err)
	}
	client := kubernetes.NewForConfigOrDie(cfg)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	abs, _ := filepath.Abs(*root)
	pc := controller.NewProvisionController(ctx, client, provisionerName,
		&localProvisioner{root: abs, node: *node},
		controller.LeaderElection(false))
	klog.InfoS("starting", "provisioner", provisionerName, "root", abs, "node", *node)
	pc.Run(ctx)
}
