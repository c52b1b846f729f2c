package infra

import (
	"errors"

	"github.com/pulumi/pulumi-gcp/sdk/v9/go/gcp/storage"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// modelBucketReaderRole lets an identity get and list the objects of a
// bucket, and nothing else: what fetching the model DVC pushed needs.
const modelBucketReaderRole = "roles/storage.objectViewer"

// ModelBucketReader lets the deploy identity read the DVC remote's bucket
// that holds the model, and only that bucket: a bucket IAM member, not a
// project role. The preview identity gets nothing there: a preview knows
// the model by the MD5 DVC recorded and never fetches it.
//
// The member is additive (BucketIAMMember), so the bucket's other members,
// such as the data scientists who dvc push, are left as they are, and the
// bucket itself is not managed by the stack.
type ModelBucketReader struct {
	pulumi.ResourceState

	// Member is the grant.
	Member *storage.BucketIAMMember
}

// ModelBucketReaderArgs are the inputs of ModelBucketReader.
type ModelBucketReaderArgs struct {
	// Bucket is the DVC remote's bucket name, without gs://.
	Bucket string
	// Member is the deploy identity, such as serviceAccount:<email>.
	Member pulumi.StringInput
}

// NewModelBucketReader grants Member object read on Bucket.
func NewModelBucketReader(ctx *pulumi.Context, name string, args *ModelBucketReaderArgs, opts ...pulumi.ResourceOption) (*ModelBucketReader, error) {
	if args.Bucket == "" || args.Member == nil {
		return nil, errors.New("ModelBucketReader: Bucket and Member are required")
	}
	c := &ModelBucketReader{}
	if err := ctx.RegisterComponentResource("mlops:infra:ModelBucketReader", name, c, opts...); err != nil {
		return nil, err
	}
	member, err := storage.NewBucketIAMMember(ctx, name, &storage.BucketIAMMemberArgs{
		Bucket: pulumi.String(args.Bucket),
		Role:   pulumi.String(modelBucketReaderRole),
		Member: args.Member,
	}, pulumi.Parent(c))
	if err != nil {
		return nil, err
	}
	c.Member = member
	return c, ctx.RegisterResourceOutputs(c, pulumi.Map{"member": member.Member})
}
