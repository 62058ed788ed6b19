package main

// Pins the dependency set while the packages that use them are written.
import (
	_ "github.com/google/go-cmp/cmp"
	_ "github.com/osrg/gobgp/v3/api"
	_ "github.com/osrg/gobgp/v3/pkg/log"
	_ "github.com/osrg/gobgp/v3/pkg/server"
	_ "github.com/spf13/cobra"
	_ "github.com/spf13/pflag"
	_ "github.com/spf13/viper"
	_ "github.com/vishvananda/netlink"
	_ "github.com/vishvananda/netns"
	_ "go.yaml.in/yaml/v3"
	_ "golang.org/x/sys/unix"
	_ "google.golang.org/grpc"
	_ "google.golang.org/protobuf/types/known/anypb"
	_ "k8s.io/client-go/kubernetes"
	_ "k8s.io/klog/v2"
)

func main() {}
