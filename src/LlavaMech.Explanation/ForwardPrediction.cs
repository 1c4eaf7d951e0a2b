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
    [property: JsonPropertyName("id")] int Id,
    [property: JsonPropertyName("token")] string Token,
    [property: JsonPropertyName("prob")] double Prob);

public sealed record ForwardResult(
    [property: JsonPropertyName("input_ids")] long[] InputIds,
    [property: JsonPropertyName("seq_len")] int SeqLen,
    [property: JsonPropertyName("num_image_tokens")] int NumImageTokens,
    [property: JsonPropertyName("image_positions")] int[] ImagePositions,
    [property: JsonPropertyName("target_id")] int TargetId,
    [property: JsonPropertyName("target_token")] string TargetToken,
    [property: JsonPropertyName("top")] TopToken[] Top,
    [property: JsonPropertyName("model")] string Model,
    [property: JsonPropertyName("device")] string Device,
    [property: JsonPropertyName("dtype")] string DType);
