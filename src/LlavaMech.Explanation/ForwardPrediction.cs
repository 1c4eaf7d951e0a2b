using System.Text.Json.Serialization;
using LlavaMech.Model;
using static TorchSharp.torch;

namespace LlavaMech.Explanation;

/// <summary><c>forward</c>: the next-token distribution of one input, its top-k tokens and the input's layout.</summary>
public static class ForwardPrediction
{
    /// <summary>One forward pass: the <paramref name="k"/> most probable next tokens (float64 softmax of the last position's logits).</summary>
    public static ForwardResult Run(LoadedModel model, ModelInput input, int k)
    {
        using var scope = NewDisposeScope();
        var logits = model.Forward(input);                                   // [V]
        var probs = logits.to(ScalarType.Float64).softmax(-1);
        var (values, indices) = probs.topk(Math.Min(k, (int)probs.shape[0]));
        var ids = indices.data<long>().ToArray();
        var ps = values.data<double>().ToArray();
        var top = ids.Select((id, i) => new TopToken((int)id, model.TokenText((int)id), ps[i])).ToArray();
        return new ForwardResult(input.InputIds, input.SeqLen, input.ImagePositions.Length, input.ImagePositions,
            top[0].Id, top[0].Token, top, model.Directory, model.Device.ToString(), model.DType.ToString());
    }
}

public sealed record TopToken(
    int Id,
    string Token,
    double Prob);

public sealed record ForwardResult(
    long[] InputIds,
    int SeqLen,
    int NumImageTokens,
    int[] ImagePositions,
    int TargetId,
    string TargetToken,
    TopToken[] Top,
    string Model,
    string Device,
    [property: JsonPropertyName("dtype")] string DType);
