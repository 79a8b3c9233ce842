package emulator

import (
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Proxy sits in front of moto and makes it behave like AWS where moto does
// not. Every AWS client in tests and local mode talks to the proxy, never to
// moto directly.
//
// What it fixes today: DynamoDB in moto is not serializable. moto checks a
// condition and then writes without a lock, so two concurrent conditional
// writes (or transactions) on one item can both succeed, and a GetItem can
// see half of a transaction. Real DynamoDB serializes them. The proxy
// restores that by running DynamoDB writes one at a time and reads alongside
// each other but never alongside a write.
//
// Later fault injection (throttling, asynchronous account creation, slow
// StackSet operations) hooks in here too.
type Proxy struct {
	rp *httputil.ReverseProxy

	// dynamo serializes DynamoDB writes against everything else in DynamoDB.
	dynamo sync.RWMutex
}

// NewProxy returns a proxy that forwards to target (moto's URL).
func NewProxy(target *url.URL) *Proxy {
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.Transport = &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
	}
	// Errors talking to moto become a 502 with a short text; the SDK
	// retries those like any 5xx.
	rp.ErrorHandler = func(w http.ResponseWriter, _ *http.Request, err error) {
		http.Error(w, "emulator unavailable: "+err.Error(), http.StatusBadGateway)
	}
	return &Proxy{rp: rp}
}

func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if op, ok := strings.CutPrefix(r.Header.Get("X-Amz-Target"), "DynamoDB_20120810."); ok {
		if dynamoWrites[op] {
			p.dynamo.Lock()
			defer p.dynamo.Unlock()
		} else {
			p.dynamo.RLock()
			defer p.dynamo.RUnlock()
		}
	}
	p.rp.ServeHTTP(w, r)
}

// dynamoWrites are the DynamoDB operations that change items or tables.
var dynamoWrites = map[string]bool{
	"PutItem": true, "UpdateItem": true, "DeleteItem": true, "BatchWriteItem": true,
	"TransactWriteItems": true, "ExecuteStatement": true, "BatchExecuteStatement": true,
	"ExecuteTransaction": true, "CreateTable": true, "DeleteTable": true, "UpdateTable": true,
}
