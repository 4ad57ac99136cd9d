package gc

import (
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/edgemc/edgemc/gc/auth"
	"github.com/edgemc/edgemc/gc/devissuer"
	"github.com/edgemc/edgemc/gc/internalpb"
)

func TestServerRefusesTokensMissingAPin(t *testing.T) {
	ctx := testCtx(t)
	iss := devissuer.NewIssuer()
	var refused []string
	v := auth.NewVerifier(auth.NewStaticKeys(iss.PublicKey()), auth.VerifierOptions{Pins: auth.ServicePins{
		Issuer: "https://ac.eu.example.net", Audience: "edgemc-eu", Subjects: []string{"gc-1", "gc-2"},
		Refused: func(reason string) { refused = append(refused, reason) },
	}})
	e := startServer(t, v, iss)
	client := internalpb.NewMeetingControllerServiceClient(e.conn)
	fits := []devissuer.Option{devissuer.WithClaim("iss", "https://ac.eu.example.net"), devissuer.WithClaim("aud", "edgemc-eu")}
	for i, tc := range []struct {
		name  string
		token string
		want  codes.Code
	}{
		{"fits every pin", iss.ServiceToken("gc-2", ServiceTypeGC, fits...), codes.OK},
		{"another deployment's issuer", iss.ServiceToken("gc-1", ServiceTypeGC, devissuer.WithClaim("iss", "https://ac.us.example.net"), fits[1]), codes.Unauthenticated},
		{"another deployment's audience", iss.ServiceToken("gc-1", ServiceTypeGC, fits[0], devissuer.WithClaim("aud", "edgemc-us")), codes.Unauthenticated},
		{"a subject not allowed", iss.ServiceToken("gc-9", ServiceTypeGC, fits...), codes.Unauthenticated},
	} {
		_, err := client.AssignMeetingWithMh(withToken(ctx, tc.token), assignReq("m-"+tc.name))
		if status.Code(err) != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
		if want := i; len(refused) != want {
			t.Errorf("%s: %d refusals counted, want %d", tc.name, len(refused), want)
		}
	}
}
