// grpc_health: a gRPC health client built on grpc-go's own health client
// (google.golang.org/grpc/health/grpc_health_v1, the library the kubelet's gRPC prober
// uses), for tests/integration/test_grpc_health.py. Built offline in GOPATH mode from
// Debian's golang-google-grpc-dev (grpc-go 1.33, before credentials/insecure):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o BUILD/tests/grpc_health tests/tools/grpc_health.go
//
// Usage:
//
//	grpc_health -addr HOST:PORT [-timeout 2s] SERVICE...
//	    one Check per SERVICE, in turn, on one connection; prints one line each:
//	    "<service> SERVING" / "<service> NOT_SERVING" / "<service> code=NotFound: msg"
//	grpc_health -addr HOST:PORT -watch N [-timeout 5s] SERVICE
//	    one Watch: prints each status as it arrives ("SERVING", "NOT_SERVING",
//	    "SERVICE_UNKNOWN"), one line each, until N came (exit 0) or the timeout
//	    or an error ("code=...: msg", exit 1)
//	grpc_health -addr HOST:PORT -conns N -calls M [-timeout 5s] SERVICE
//	    M Checks at once spread over N connections; prints one JSON object:
//	    {"SERVING": n, "NOT_SERVING": n, "errors": n, "first_error": "..."}
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

func dial(addr string, timeout time.Duration) (*grpc.ClientConn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	// as the kubelet's prober first did: plaintext h2c, blocking dial
	return grpc.DialContext(ctx, addr, grpc.WithInsecure(), grpc.WithBlock(),
		grpc.WithUserAgent("kube-probe/test"))
}

func check(conn *grpc.ClientConn, service string, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		return "", err
	}
	return resp.GetStatus().String(), nil
}

func main() {
	addr := flag.String("addr", "", "HOST:PORT")
	timeout := flag.Duration("timeout", 2*time.Second, "per call, and for the dial")
	conns := flag.Int("conns", 0, "connections (load mode)")
	calls := flag.Int("calls", 0, "concurrent calls (load mode)")
	watch := flag.Int("watch", 0, "Watch until this many statuses came")
	flag.Parse()
	if *addr == "" || flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: grpc_health -addr HOST:PORT [-conns N -calls M] SERVICE...")
		os.Exit(2)
	}
	if *watch > 0 {
		os.Exit(watchOne(*addr, flag.Arg(0), *watch, *timeout))
	}
	if *conns > 0 {
		os.Exit(load(*addr, *conns, *calls, flag.Arg(0), *timeout))
	}
	conn, err := dial(*addr, *timeout)
	if err != nil {
		fmt.Printf("dial error: %v\n", err)
		os.Exit(1)
	}
	defer conn.Close()
	for _, svc := range flag.Args() {
		st, err := check(conn, svc, *timeout)
		if err != nil {
			s, _ := status.FromError(err)
			fmt.Printf("%s code=%s: %s\n", svc, s.Code(), s.Message())
		} else {
			fmt.Printf("%s %s\n", svc, st)
		}
	}
}

func load(addr string, nconns, ncalls int, svc string, timeout time.Duration) int {
	cs := make([]*grpc.ClientConn, nconns)
	var wg sync.WaitGroup
	var mu sync.Mutex
	res := map[string]interface{}{"SERVING": 0, "NOT_SERVING": 0, "errors": 0, "first_error": ""}
	bump := func(k string, e error) {
		mu.Lock()
		res[k] = res[k].(int) + 1
		if e != nil && res["first_error"] == "" {
			res["first_error"] = e.Error()
		}
		mu.Unlock()
	}
	for i := range cs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c, err := dial(addr, timeout)
			if err != nil {
				bump("errors", err)
				return
			}
			cs[i] = c
		}(i)
	}
	wg.Wait()
	start := make(chan struct{})
	for i := 0; i < ncalls; i++ {
		c := cs[i%nconns]
		if c == nil {
			bump("errors", fmt.Errorf("no connection"))
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			st, err := check(c, svc, timeout)
			if err != nil {
				bump("errors", err)
			} else {
				bump(st, nil)
			}
		}()
	}
	close(start)
	wg.Wait()
	for _, c := range cs {
		if c != nil {
			c.Close()
		}
	}
	out, _ := json.Marshal(res)
	fmt.Println(string(out))
	return 0
}

func watchOne(addr, svc string, n int, timeout time.Duration) int {
	conn, err := dial(addr, timeout)
	if err != nil {
		fmt.Printf("dial error: %v\n", err)
		return 1
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	stream, err := healthpb.NewHealthClient(conn).Watch(ctx, &healthpb.HealthCheckRequest{Service: svc})
	for i := 0; err == nil && i < n; i++ {
		var resp *healthpb.HealthCheckResponse
		if resp, err = stream.Recv(); err == nil {
			fmt.Println(resp.GetStatus().String())
		}
	}
	if err != nil {
		s, _ := status.FromError(err)
		fmt.Printf("code=%s: %s\n", s.Code(), s.Message())
		return 1
	}
	return 0
}
