package infra

import (
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// The deploy identity reads the DVC remote's bucket and nothing more: one
// bucket IAM member of roles/storage.objectViewer on that bucket, not a
// project role, and no grant for anyone else.
func TestModelBucketReaderGrantsObjectViewerOnThatBucketOnly(t *testing.T) {
	member := "serviceAccount:mlops-ci@" + testProject + ".iam.gserviceaccount.com"
	mocks := declare(t, func(ctx *pulumi.Context) error {
		_, err := NewModelBucketReader(ctx, "model-bucket-reader", &ModelBucketReaderArgs{
			Bucket: "planets-mlops-dvc",
			Member: pulumi.String(member),
		})
		return err
	})
	requireParented(t, mocks, "mlops:infra:ModelBucketReader")
	grant := mocks.One(t, "gcp:storage/bucketIAMMember:BucketIAMMember")
	for path, want := range map[string]string{
		"bucket": "planets-mlops-dvc", "role": "roles/storage.objectViewer", "member": member,
	} {
		if got := grant.Str(path); got != want {
			t.Errorf("%s = %q, want %q", path, got, want)
		}
	}
	if n := len(mocks.OfType("gcp:projects/iAMMember:IAMMember")); n != 0 {
		t.Errorf("%d project roles granted, want none", n)
	}
}

func TestModelBucketReaderRefusesMissingArgs(t *testing.T) {
	declareErr := func(args *ModelBucketReaderArgs) error {
		var err error
		declare(t, func(ctx *pulumi.Context) error {
			_, err = NewModelBucketReader(ctx, "r", args)
			return nil
		})
		return err
	}
	if err := declareErr(&ModelBucketReaderArgs{Member: pulumi.String("user:a@b.c")}); err == nil {
		t.Error("no bucket: accepted")
	}
}
